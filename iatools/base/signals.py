"""How iatools commands react to SIGINT, SIGTERM and SIGHUP.

Handlers are installed by ``main``, never at import.  Three behaviours:

* filters (resolve, skip, route): the first signal ends the command through
  KeyboardInterrupt, exit status 130;
* a worker pool (fetch): the first signal asks for a graceful stop, a
  second one exits at once;
* recorders (joblog append/tee): they note the signal and go on reading
  until their input ends, so the last events of a pipeline that was
  interrupted as a whole (Ctrl-C reaches every process in it) are kept.
"""

import os
import select
import signal

from iatools.base.status import ExitStatus

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def interrupt_on_stop_signals():
    """SIGTERM and SIGHUP end a filter the way Ctrl-C does."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_interrupt)


class GracefulStop:
    """First stop signal sets ``requested``; the second exits at once.

    ``wait(timeout)`` returns early on a signal or a ``wake()`` from any
    thread.  Both go through a pipe: a handler runs in the main thread
    between any two bytecodes, possibly while that thread holds an Event's
    lock, so a handler that set an Event the main thread waits on could
    deadlock; a write to a pipe takes no lock."""

    def __init__(self):
        self.requested = False
        self.signal_name = None
        self._wake_read, self._wake_write = os.pipe()
        for fd in (self._wake_read, self._wake_write):
            os.set_blocking(fd, False)

    def install(self):
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)
        return self

    def __enter__(self):
        """Install the handlers until the ``with`` block ends: a command run
        in-process (``main(argv, streams)``) leaves its caller's handlers
        and file descriptors as they were."""
        self._previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        return self.install()

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            # None: a handler not set from Python; the default is closest.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for fd in (self._wake_read, self._wake_write):
            os.close(fd)
        self._wake_read = self._wake_write = -1  # a late wake() fails quietly

    def _handle(self, signum, frame):
        if self.requested:
            os._exit(ExitStatus.INTERRUPTED)
        self.signal_name = signal.Signals(signum).name
        self.requested = True
        self.wake()

    def wake(self):
        try:
            os.write(self._wake_write, b"\0")
        except OSError:
            pass  # the pipe is full: a wake-up is pending already; or closed: all over

    def wait(self, timeout):
        """Until a stop signal or a ``wake()``, or ``timeout`` seconds."""
        if select.select([self._wake_read], [], [], timeout)[0]:
            os.read(self._wake_read, 4096)


class DrainUntilEndOfInput:
    """Note stop signals without stopping; ``received`` tells if one came."""

    def __init__(self):
        self.received = False

    def install(self):
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = True
