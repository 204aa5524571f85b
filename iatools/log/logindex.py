"""The recorders keep the readers' checkpoints up to date as they go.

``append`` and ``tee`` see every event a run writes; a reader that comes
after them should parse only what was written since the last save, not
everything since the last reader.  So a recorder brings the three
checkpoints (completed, pending, status: iatools.log.checkpoint) up to date
once it has written enough for a reader to save them (checkpoint.SAVE_AFTER):
at most every ``REFRESH_EVERY`` seconds while it runs, in a child process
(the pipeline does not wait for it), and once when its input ends.  Each
refresh starts from the checkpoints there are and parses only the events
after them, then saves them atomically, as any reader does: a writer
killed mid-way leaves the last good checkpoints, and deleting them costs a
reading from the start, never a wrong answer.  A refresh says nothing
about damaged log lines: the readers report those.  (``skip``, at the
start of a pipeline, leaves its queued events to the ``append`` at the end
of it: it must not hold back the jobs it passes on.)
"""

import os
import time

from iatools.base import errors

from iatools.log import checkpoint, logreport
from iatools.log.completions import Completions
from iatools.log.openjobs import OpenJobs

#: Seconds between two refreshes while a writer runs.
REFRESH_EVERY = 300.0


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
    """Refreshes the checkpoints of one log for its writer."""

    def __init__(self, path):
        self.path = path
        self._last = time.monotonic()
        self._child = None
        self._unindexed = 0

    def wrote(self, size):
        """After each write of ``size`` bytes: a refresh in a child process,
        when it is time and the last one is done."""
        self._unindexed += size
        if (self._unindexed < checkpoint.SAVE_AFTER or not self._child_done()
                or time.monotonic() - self._last < REFRESH_EVERY):
            return
        self._last = time.monotonic()
        self._unindexed = 0
        self._child = os.fork()
        if self._child == 0:
            try:
                refresh(self.path)
            finally:
                os._exit(0)

    def _child_done(self):
        if self._child is None:
            return True
        pid, _ = os.waitpid(self._child, os.WNOHANG)
        if pid:
            self._child = None
        return pid != 0

    def close(self):
        """When the input has ended: the last refresh, here (none for a few
        events: a reader would not save them, and loading the checkpoints
        of a big log costs seconds)."""
        if self._child is not None:
            os.waitpid(self._child, 0)
            self._child = None
        if self._unindexed >= checkpoint.SAVE_AFTER:
            refresh(self.path)
