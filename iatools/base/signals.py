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
import threading
from contextlib import contextmanager

from iatools.base.status import ExitStatus

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _on_main_thread():
    # Python lets only the main thread set a handler: a command run
    # in-process from another thread keeps its caller's.
    return threading.current_thread() is threading.main_thread()


def _install(handler):
    if _on_main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, handler)


def _saved():
    return {signum: signal.getsignal(signum) for signum in STOP_SIGNALS
            } if _on_main_thread() else {}


def _restore(saved):
    for signum, handler in saved.items():
        # None: a handler not set from Python; the default is closest.
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)


@contextmanager
def restored():
    """Put the stop signals' handlers back as they were when the block
    ends: a command run in-process (``main(argv, streams)``) leaves its
    caller's as it found them."""
    saved = _saved()
    try:
        yield
    finally:
        _restore(saved)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def interrupt_on_stop_signals():
    """SIGTERM and SIGHUP end a filter the way Ctrl-C does."""
    _install(_raise_interrupt)


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

    def __enter__(self):
        """Install the handlers until the ``with`` block ends: a command run
        in-process leaves its caller's handlers and file descriptors as
        they were."""
        self._previous = _saved()
        _install(self._handle)
        return self

    def __exit__(self, *exc_info):
        _restore(self._previous)
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
        _install(self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = True
