"""The writers keep the readers' checkpoints up to date as they go.

``append``, ``tee`` and ``skip`` see every event a run writes; a reader that
comes after them should parse only what was written since the last save,
not everything since the last reader.  So ``append`` and ``tee`` bring the
three checkpoints (completed, pending, status: iatools.log.checkpoint) up
to date whenever they have written enough for a reader to save them
(checkpoint.SAVE_AFTER) and the last refresh is done: in a process of its
own (iatools.log.refresher), which the pipeline does not wait for, at most
half of the time (a refresh that took 4 s of CPU is followed by one 8 s
after it began, at the soonest: niced, it may wait far longer than that
behind the readings typed meanwhile).  Each refresh starts from the
checkpoints there are (trusted without reading the log while the writers'
stamp holds) and parses only the events after them, then saves them
atomically, as any reader does: a refresh killed mid-way leaves the last
good checkpoints, and deleting them costs a reading from the start, never
a wrong answer.  A refresh says nothing about damaged log lines: the
readers report those.

When its input ends, a writer leaves the last refresh to a process it does
not wait for: waiting would cost ``append`` of ten million events more than
its writing does (each refresh parses what was written since the last one,
three times: completed, pending, status), and ``skip``, at the head of a
pipeline, must not hold it up.  A reading that comes before the refresh is
done parses the rest itself.  (But ``skip`` into a new log saves the
checkpoints itself, and leaves no refresh: iatools.log.queuedindex.)
"""

import fcntl
import os
import subprocess
import sys
import time

from iatools.base import errors
from iatools.log import checkpoint, logreport
from iatools.log.completions import Completions
from iatools.log.openjobs import OpenJobs
from iatools.log.refresher import cpu_seconds_left, lock_path

#: Seconds between the starts of two refreshes, at the least.
REFRESH_GAP = 10.0


def refresh(path):
    """Bring the checkpoints of the log at ``path`` up to date."""
    loud = errors.verbosity()
    try:
        errors.configure(errors.prog(), errors.QUIET)
        state, end = Completions.read(path, report=False)
        OpenJobs.read(path, state.done, end, refresh=True)
        logreport.read(path)
    except (OSError, errors.IatoolsError) as exc:
        errors.configure(errors.prog(), loud)
        errors.debug(f"{path}: checkpoints not brought up to date ({exc})")
    finally:
        errors.configure(errors.prog(), loud)


class IndexKeeper:
    """Refreshes the checkpoints of one log for its writer; with
    ``while_writing`` false, only when the writing is done (skip: a run of
    seconds, whose refreshes would only double its memory and time)."""

    def __init__(self, path, while_writing=True):
        self.path = path
        self.while_writing = while_writing
        # As if a refresh began REFRESH_GAP ago: the first one starts as
        # soon as there is enough to save (a run's first minutes are when
        # someone looks at its status).
        self._started = time.monotonic() - REFRESH_GAP
        self._took = 0.0
        self._running = False
        self._unindexed = 0

    def wrote(self, size):
        """After each write of ``size`` bytes: a refresh, when it is time
        and the last one is done."""
        self._unindexed += size
        if (not self.while_writing or self._unindexed < checkpoint.SAVE_AFTER
                or self._refresh_running()
                or time.monotonic() - self._started < max(REFRESH_GAP, 2 * self._took)):
            return
        self._start()

    def leave(self):
        """When the input has ended: the last refresh, in a process that
        outlives this one and waits for any refresh still running (the
        writer exits at once)."""
        if self._unindexed >= checkpoint.SAVE_AFTER:
            self._start()

    def _start(self):
        self._started = time.monotonic()
        self._unindexed = 0
        self._running = _start_refresh(self.path)

    def _refresh_running(self):
        """Is the refresh started last still running (or another one of the
        same log, which this writer's waits for)?"""
        if self._running and not _refresh_lock_free(self.path):
            return True
        if self._running:
            self._running = False
            took = cpu_seconds_left(self.path)
            self._took = time.monotonic() - self._started if took is None else took
        return False


def _start_refresh(path):
    """Start a refresh of the log at ``path`` in the background (see
    iatools.log.refresher); did it start?"""
    if not sys.executable:
        return False  # (an embedded Python: no interpreter to start)
    # Where this iatools is, for the new interpreter to import the same.
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    try:
        first = subprocess.Popen([sys.executable, "-m", "iatools.log.refresher", path],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        return first.wait() == 0
    except OSError as exc:
        errors.debug(f"{path}: no refresh of its checkpoints started ({exc.strerror})")
        return False


def _refresh_lock_free(path):
    try:
        fd = os.open(lock_path(path), os.O_RDWR)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
