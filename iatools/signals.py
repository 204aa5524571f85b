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
import signal
import threading

from iatools.status import ExitStatus

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def interrupt_on_stop_signals():
    """SIGTERM and SIGHUP end a filter the way Ctrl-C does."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_interrupt)


class GracefulStop:
    """First stop signal sets ``requested``; the second exits at once.
    ``wake`` is set with it, and may be set by others too, for a main loop
    that waits for a signal or for its work to end, whichever comes first."""

    def __init__(self):
        self.requested = threading.Event()
        self.wake = threading.Event()
        self.signal_name = None

    def install(self):
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested.is_set():
            os._exit(ExitStatus.INTERRUPTED)
        self.signal_name = signal.Signals(signum).name
        self.requested.set()
        self.wake.set()


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
