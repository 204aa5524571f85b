"""The process a writer starts to bring a log's index up to date:
``python -m iatools.log.refresher LOG`` (iatools.log.logindex).

It is a fresh interpreter rather than a fork of the writer, which may be a
program with threads (the Python API): a fork would inherit their locks
held, and every descriptor.  It leaves at once, so that the writer reaps
it and holds no zombie for as long as it lives; its own child (in the
session of its own the writer started it in) does the work while it holds
the log's refresh lock
(``LOG.refresh-lock``): taken before the first process leaves when it is
free, so that the writer sees a refresh running from the moment it
returns, else waited for, so that refreshes of one log follow each other.
"""

import fcntl
import os
import sys


def lock_path(log_path):
    return f"{log_path}.refresh-lock"


def main(argv=None):
    log_path, = sys.argv[1:] if argv is None else argv
    lock = os.open(lock_path(log_path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held = True
    except BlockingIOError:
        held = False
    if os.fork():
        os._exit(0)
    # Behind the writer and any reading that someone waits for: the
    # refresh only saves the next reading some work.
    _lower_priority(19)
    if not held:
        fcntl.flock(lock, fcntl.LOCK_EX)
    # Imported here, in the child only: the writer waits for the first
    # process to leave, not for the readers' modules to load.
    from iatools.log.logindex import refresh
    refresh(log_path)
    _leave_cpu_seconds(lock)
    return 0


def _leave_cpu_seconds(lock):
    """Leave in the lock file the CPU seconds this refresh took, its
    children's included: its writer starts the next one no sooner than
    twice that after it began.  Its wall time would say how long it was
    held back behind the readings typed meanwhile: in J1, long enough that
    no refresh ran in the minute after them."""
    times = os.times()
    seconds = times.user + times.system + times.children_user + times.children_system
    os.ftruncate(lock, 0)
    os.pwrite(lock, b"%.3f\n" % seconds, 0)


def cpu_seconds_left(log_path):
    """The CPU seconds the last refresh of the log at ``log_path`` took, as
    it left them in its lock file; None when it left none."""
    try:
        with open(lock_path(log_path), "rb") as lock:
            return float(lock.read(32))
    except (OSError, ValueError):
        return None


def _lower_priority(increment):
    """Nice this process by ``increment``, and its session's autogroup
    (Linux, where it is on: the default of many systems): there, the
    scheduler first shares the cores between sessions, whatever their
    processes' nice values, and this one has a session of its own.  A
    reading typed while the refresh runs took 20.5 s of wall time for
    13.1 s of CPU."""
    os.nice(increment)
    try:
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(increment))
    except OSError:
        pass  # (no autogroup here: nice alone decides)


if __name__ == "__main__":
    sys.exit(main())
