"""A job in ia-fetch's pool, from its lock to its outcome event.

A job becomes a ``JobRun`` when a worker takes it: a ``PlanTask`` (its
metadata request) and then one ``FileTask`` per file go through the task
queue, each adding to the run what its file did.  The run ends with one
event: ``completed`` or ``failed`` (``planned`` in a dry run).  See
iatools(7) for their fields.
"""

import os
import time
from dataclasses import dataclass, field

from iatools.contract.jobs import make_event
from iatools.fetching.failures import Failures
from iatools.fetching.http import DiskUnavailableError, LocalDiskError, TransientError
from iatools.fetching.localtree import delete_files, unlisted_files
from iatools.fetching.selection import listed_names
from iatools.fetching.transfer import ensure_inside


@dataclass(eq=False)  # each run is itself: kept in a set by identity
class JobRun:
    """A job in flight: what its files have done so far."""

    job: dict
    started: float = field(default_factory=time.monotonic)
    outstanding: int = 0
    fetched_files: int = 0
    skipped_files: int = 0
    bytes: int = 0
    attempts: int = 0
    failures: Failures = field(default_factory=Failures)
    interrupted: bool = False
    lock: str = None
    directories: set = field(default_factory=set)  # made for its files
    #: completed's "reason", "files_removed", "files_deleted" (see iatools(7))
    outcome: dict = field(default_factory=dict)
    node_base: str = None  # its directory on its storage node (storagenodes)

    def fail(self, error, file_name=None):
        """Record a failure of the job (``file_name`` None) or of one file;
        every file's is reported, and the job's other files go on."""
        self.failures.add(error, file_name)

    def make_directory(self, plan):
        """The directory ``plan``'s file goes in, made once per run."""
        directory = os.path.dirname(plan.path)
        if directory not in self.directories:
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as error:
                raise LocalDiskError(f"cannot create {directory}: {error.strerror}") from None
            self.directories.add(directory)
        return directory

    def find_removed(self, metadata):
        """Note the files in the item's directory that the item no longer
        lists (not for file jobs, whose directory holds the rest of the
        item)."""
        item_dir = os.path.join(self.job["destdir"], self.job["id"])
        if "file" in self.job or not os.path.isdir(item_dir):
            return
        ensure_inside(self.job["destdir"], {item_dir})
        removed = unlisted_files(item_dir, listed_names(self.job["id"], metadata))
        if removed:
            self.outcome["files_removed"] = removed

    def delete_removed(self):
        """--delete, once every file of the item is in place."""
        removed = self.outcome.get("files_removed")
        if removed and not self.failures and not self.interrupted:
            item_dir = os.path.join(self.job["destdir"], self.job["id"])
            self.outcome["files_deleted"] = delete_files(item_dir, removed)


@dataclass(eq=False)
class PlanTask:
    """A job's metadata request; ``begun`` once its lock is taken."""

    run: JobRun
    failures: int = 0
    begun: bool = False


@dataclass(eq=False)
class FileTask:
    run: JobRun
    plan: object
    url: str  # where the next attempt asks: the storage node, else /download/
    failures: int = 0
    claimed: bool = False  # its path is this task's (Pool._claim)
    checked: bool = False  # whether the file is in place already is known:
    present: bool = False  # ... and this is the answer


def outcome_event(run):
    """The ``completed`` or ``failed`` event that ends ``run``."""
    details = {"files": run.fetched_files, "files_skipped": run.skipped_files,
               "bytes": run.bytes, "seconds": round(time.monotonic() - run.started, 3),
               "attempts": run.attempts}
    if run.interrupted:  # said even when some files failed before it
        run.fail(TransientError("interrupted before it finished; run again to resume"))
    if not run.failures:
        return make_event("completed", run.job, **details, **run.outcome)
    return make_event("failed", run.job, **details, **run.failures.details())


def planned_event(run, plans, wanted):
    """The ``planned`` event that ends a dry run's job: ``wanted`` are the
    ``plans`` not in place already."""
    if run.interrupted and not run.failures:
        run.fail(TransientError("interrupted"))
    details = {"files": len(wanted), "files_skipped": len(plans) - len(wanted),
               "bytes": sum(p.size or 0 for p in wanted),
               "plan": [{"name": p.name, "size": p.size} for p in wanted]}
    unknown = sum(p.size is None for p in wanted)
    if unknown:  # their bytes are not in "bytes"; the plan shows them as null
        details["files_unknown_size"] = unknown
    details.update(run.failures.details())
    details.update((k, v) for k, v in run.outcome.items() if k in ("reason", "files_removed"))
    return make_event("planned", run.job, **details)


def check_destdir(destdir):
    if not os.path.isdir(destdir):
        raise DiskUnavailableError(
            f"destination {destdir} is not a directory (disk not mounted?)")
