"""The writers keep the readers' checkpoints up to date as they go.

``append``, ``tee`` and ``skip`` see every event a run writes; a reader that
comes after them should parse only what was written since the last save,
not everything since the last reader.  So ``append`` and ``tee`` bring the
three checkpoints (completed, pending, status: iatools.log.checkpoint) up
to date whenever they have written enough for a reader to save them
(checkpoint.SAVE_AFTER) and the last refresh is done: in a child process,
which the pipeline does not wait for, at most half of the time (a refresh
that took 4 s is followed by one 8 s after it began, at the soonest).  Each
refresh starts from the checkpoints there are (trusted without reading the
log while the writers' stamp holds) and parses only the events after them,
then saves them atomically, as any reader does: a writer killed mid-way
leaves the last good checkpoints, and deleting them costs a reading from
the start, never a wrong answer.  A refresh says nothing about damaged log
lines: the readers report those.

When its input ends, a writer leaves the last refresh to a child it does
not wait for: waiting would cost ``append`` of ten million events more than
its writing does (each refresh parses what was written since the last one,
three times: completed, pending, status), and ``skip``, at the head of a
pipeline, must not hold it up.  A reading that comes before the child is
done parses the rest itself.
"""

import os
import time

from iatools.base import errors
from iatools.log import checkpoint, logreport
from iatools.log.completions import Completions
from iatools.log.openjobs import OpenJobs

#: Seconds between the starts of two refreshes, at the least.
REFRESH_GAP = 10.0


def refresh(path):
    """Bring the checkpoints of the log at ``path`` up to date."""
    loud = errors.verbosity()
    try:
        errors.configure(errors.prog(), errors.QUIET)
        state, end = Completions.read(path, report=False)
        OpenJobs.read(path, state.done, end)
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
        self._child = None
        self._unindexed = 0

    def wrote(self, size):
        """After each write of ``size`` bytes: a refresh in a child process,
        when it is time and the last one is done."""
        self._unindexed += size
        if (not self.while_writing or self._unindexed < checkpoint.SAVE_AFTER
                or not self._child_done()
                or time.monotonic() - self._started < max(REFRESH_GAP, 2 * self._took)):
            return
        self._start_child()

    def _start_child(self, after=None):
        """A refresh in a child; first, the end of the refresh ``after``."""
        self._started = time.monotonic()
        self._unindexed = 0
        self._child = os.fork()
        if self._child == 0:
            try:
                _let_go_of_the_pipeline()
                # Behind the writer and any reading that someone waits for:
                # the refresh only saves the next reading some work.
                os.nice(10)
                _wait_for(after)
                refresh(self.path)
            finally:
                os._exit(0)

    def _child_done(self):
        if self._child is None:
            return True
        pid, _ = os.waitpid(self._child, os.WNOHANG)
        if pid:
            self._child = None
            self._took = time.monotonic() - self._started
        return pid != 0

    def leave(self):
        """When the input has ended: the last refresh, in a child that
        outlives this process and waits for the one still running, if any
        (the writer exits at once)."""
        if self._unindexed >= checkpoint.SAVE_AFTER:
            running = None if self._child_done() else self._child
            self._start_child(after=running)


def _wait_for(pid):
    """Until the process ``pid`` (not a child of this one) is gone."""
    while pid is not None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)


def _let_go_of_the_pipeline():
    """In a refresh child: no hold on the writer's standard streams, so that
    the next command in the pipeline (or the shell reading them) sees their
    end when the writer exits, not when the child does; and a session of
    its own, so that what ends the pipeline's (a hang-up, a harness killing
    what a command left behind) does not end a refresh: a refresh cut
    short is lost work, though never a wrong checkpoint."""
    os.setsid()
    quiet = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(quiet, fd)
    os.close(quiet)
