"""ia-fetch's worker pool: N workers, N connections, items and files mixed.

Each worker owns one keep-alive HTTP session, so the concurrency limit is
the number of connections to archive.org whatever mix of metadata requests
and files they serve.  A job's metadata request turns it into file tasks,
which go to the shared ``files`` queue; workers take file tasks before new
jobs, so a 200-file item is spread over all workers and the number of items
in flight stays small.  New jobs wait in a short queue filled by the reader
thread, whose blocking is the backpressure on the pipe.
"""

import collections
import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field

from iatools import errors
from iatools.failures import Failures, explain_refusal
from iatools.http import Cancelled, FetchError, RetryPolicy
from iatools.jobs import make_event
from iatools.localtree import delete_files, unlisted_files
from iatools.locks import Locked
from iatools.selection import add_version, fetch_metadata, listed_names, plan_files
from iatools.sizes import free_bytes
from iatools.transfer import NO_SPACE, Transfer, ensure_inside, is_present

#: How many times a file that met a full disk is tried again, each time
#: after the transfers then writing have ended (Pool._with_room).
SPACE_RETRIES = 3


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
    #: completed's "note", "removed", "deleted" (see iatools(7))
    outcome: dict = field(default_factory=dict)

    def fail(self, error, file_name=None):
        """Record a failure of the job (``file_name`` None) or of one file;
        every file's is reported, and the job's other files go on."""
        self.failures.add(error, file_name)


@dataclass
class FileTask:
    run: JobRun
    plan: object


class Pool:
    def __init__(self, settings, emit, cancel, gate, progress, locks):
        self.settings = settings
        self.locks = locks
        self.emit = emit
        self.cancel = cancel
        self.gate = gate
        self.progress = progress
        self.condition = threading.Condition()
        self.files = collections.deque()
        self.new_jobs = collections.deque()
        self.input_done = False
        self.stop_new = False
        self.active = 0
        self.transfers = set()
        self.waiting_for_space = set()  # transfers that met a full disk
        self.paths_busy = set()  # files being fetched or installed
        self.runs = set()  # jobs past their lock, not yet ended
        self.cancelled_at = None
        self.finishing = queue.SimpleQueue()  # (run, transfer) downloaded and checked
        self.local = threading.local()
        self.working = 0  # workers not yet ended
        self.on_finished = None
        self.crashed = False  # a worker died of an unexpected error

    # -- fed by the reader thread -------------------------------------------
    def offer(self, job):
        """Queue a job; blocks while the queue is full (backpressure)."""
        with self.condition:
            while len(self.new_jobs) >= self.settings.read_ahead and not self._stopping():
                self.condition.wait()
            if self._stopping():
                return False
            self.new_jobs.append(job)
            self.condition.notify_all()
            return True

    def close_input(self):
        with self.condition:
            self.input_done = True
            self.condition.notify_all()

    def stop_taking_jobs(self):
        with self.condition:
            self.stop_new = True
            self.condition.notify_all()

    def wake(self):
        with self.condition:
            self.condition.notify_all()

    def cancel_now(self):
        """Stop everything: no new work, and transfers cut mid-read."""
        self.cancel.set()
        with self.condition:
            self.cancelled_at = self.cancelled_at or time.monotonic()
            transfers = list(self.transfers)
            self.condition.notify_all()
        for transfer in transfers:
            transfer.abort()

    def overdue(self, grace):
        """True when workers are still busy ``grace`` seconds after a cancel."""
        return self.cancelled_at is not None and time.monotonic() - self.cancelled_at > grace

    def abandon(self):
        """End the jobs still in flight with their interrupted events now.
        A request that has not had its response headers yet cannot be cut
        (only a transfer's socket is known), and its worker would notice the
        cancel only at --timeout; the process exits without it."""
        with self.condition:
            runs = list(self.runs)
        for run in runs:
            run.interrupted = True
            self._end(run)

    def _stopping(self):
        return self.stop_new or self.cancel.is_set()

    # -- workers --------------------------------------------------------------
    def start(self, count, on_finished):
        """Start ``count`` workers; the last one to finish calls ``on_finished()``."""
        self.on_finished = on_finished
        self.working = count
        for i in range(count):
            threading.Thread(target=self._work, name=f"worker-{i}", daemon=True).start()
        # A job stays active until its last file is finished, so the
        # finisher is idle whenever the workers are all gone.
        threading.Thread(target=self._finish_files, name="finisher", daemon=True).start()

    def alive(self):
        with self.condition:
            return self.working > 0

    def _work(self):
        try:
            self.local.connection = self.settings.new_connection(self.gate)
            while (task := self._next_task()) is not None:
                if isinstance(task, FileTask):
                    self._run_file(task)
                else:
                    self._run_job(task)
        except Exception:  # a bug: stop the run rather than wait forever for its job
            errors.error(f"internal error in {threading.current_thread().name}, stopping:\n"
                         + traceback.format_exc().rstrip())
            self.crashed = True
            self.cancel_now()
        finally:
            with self.condition:
                self.working -= 1
                last = self.working == 0
            if last:
                self.on_finished()

    def _next_task(self):
        with self.condition:
            while True:
                if self.files:
                    return self.files.popleft()
                if self.new_jobs and not self._stopping():
                    self.active += 1
                    job = self.new_jobs.popleft()
                    self.condition.notify_all()
                    return job
                if self.active == 0 and (self.input_done or self._stopping()):
                    self.condition.notify_all()
                    return None
                self.condition.wait()

    def _job_done(self, event):
        """End a job that never took its item's lock.  The event goes out
        first: once ``active`` is 0 the workers may end, and the run with
        them, before an event emitted after it was queued."""
        self.emit(event)
        with self.condition:
            self.active -= 1
            self.condition.notify_all()

    def _end(self, run):
        """End a locked job with its outcome event, once: a job that
        ``abandon`` ended already is not ended again by its worker."""
        with self.condition:
            if run not in self.runs:
                return
            self.runs.discard(run)
        self._delete_removed(run)
        self.locks.release(run.lock)
        self._job_done(self._outcome_event(run))

    # -- one job ----------------------------------------------------------------
    def _run_job(self, job):
        run = JobRun(job)
        if self.settings.dry_run:
            return self._plan_only(run)
        if not self._lock(run):
            return
        with self.condition:
            self.runs.add(run)
        self.emit(make_event("started", job))
        policy = RetryPolicy(self.settings.retries, self.gate)
        try:
            plans = self._plan(run, policy)
        except Cancelled:
            run.interrupted = True
            plans = []
        except FetchError as error:
            run.fail(error)
            plans = []
        finally:
            run.attempts += policy.attempts
        self._queue_files(run, plans)

    def _lock(self, run):
        """Take the item's lock; else end the job (skipped or failed)."""
        job = run.job
        try:
            _check_destdir(job["destdir"])
            run.lock = self._acquire(job)
            return True
        except Locked as locked:
            self._job_done(make_event("skipped", job, reason="locked", lock_owner=locked.owner))
        except Cancelled:  # while waiting for room for the lock file
            run.interrupted = True
            self._job_done(self._outcome_event(run))
        except FetchError as error:
            run.fail(error)
            self._job_done(self._outcome_event(run))
        except OSError as error:
            run.fail(FetchError(f"cannot lock the item in {job['destdir']}: {error.strerror}",
                                True, local=True))
            self._job_done(self._outcome_event(run))
        return False

    def _acquire(self, job):
        """The item's lock; a lock file that meets a full disk is tried
        again as a file is (``_with_room``)."""
        return self._with_room(lambda: self.locks.acquire(job["destdir"], job["id"]),
                               job["destdir"])

    def _plan(self, run, policy):
        job = run.job
        destdir = job["destdir"]
        connection = self.local.connection
        metadata = policy.run(lambda: fetch_metadata(connection, self.settings.base_url,
                                                     job["id"]))
        plans, unsafe = plan_files(self.settings.session, metadata, job, destdir,
                                   self.settings.filters, self.settings.flat)
        for name, problem in unsafe:
            run.fail(FetchError(f"unsafe file name in the metadata, not downloaded: {problem}",
                                False), name)
        run.failures.planned = len(plans) + len(unsafe)
        add_version(job, metadata)
        if not plans and not unsafe:
            # As ia download: an outcome, not a failure ("mirror only the
            # PDFs" must not fail every item without one).
            run.outcome["note"] = "no files match the filters"
        ensure_inside(destdir, {os.path.dirname(plan.path) for plan in plans})
        self._find_removed(run, metadata)
        return plans

    def _find_removed(self, run, metadata):
        """Note the files in the item's directory that the item no longer
        lists (not for file jobs, nor with --no-directories, where files of
        several items share a directory)."""
        job = run.job
        item_dir = os.path.join(job["destdir"], job["id"])
        if "file" in job or self.settings.flat or not os.path.isdir(item_dir):
            return
        ensure_inside(job["destdir"], {item_dir})
        removed = unlisted_files(item_dir, listed_names(job["id"], metadata))
        if removed:
            run.outcome["removed"] = removed

    def _delete_removed(self, run):
        """--delete, once every file of the item is in place."""
        removed = run.outcome.get("removed")
        if removed and self.settings.delete and not run.failures and not run.interrupted:
            item_dir = os.path.join(run.job["destdir"], run.job["id"])
            run.outcome["deleted"] = delete_files(item_dir, removed)

    def _queue_files(self, run, plans):
        if not plans:
            return self._end(run)
        with self.condition:
            run.outstanding = len(plans)
            self.files.extend(FileTask(run, plan) for plan in plans)
            self.condition.notify_all()

    def _plan_only(self, run):
        policy = RetryPolicy(self.settings.retries, self.gate)
        try:
            _check_destdir(run.job["destdir"])
            plans = self._plan(run, policy)
        except (FetchError, Cancelled) as error:
            run.fail(error if isinstance(error, FetchError) else FetchError("interrupted", True))
            plans = []
        wanted = [p for p in plans if not self._is_present(run, p)]
        details = {"files": len(wanted), "files_skipped": len(plans) - len(wanted),
                   "bytes": sum(p.size or 0 for p in wanted),
                   "plan": [{"name": p.name, "size": p.size} for p in wanted]}
        unknown = sum(p.size is None for p in wanted)
        if unknown:  # their bytes are not in "bytes"; the plan shows them as null
            details["files_unknown_size"] = unknown
        details.update(run.failures.details())
        details.update((k, v) for k, v in run.outcome.items() if k in ("note", "removed"))
        self._job_done(make_event("planned", run.job, **details))

    # -- one file ---------------------------------------------------------------
    def _run_file(self, task):
        run, plan = task.run, task.plan
        self._claim(plan.path)
        if self.cancel.is_set():
            run.interrupted = True
        elif self._is_present(run, plan):
            with self.condition:
                run.skipped_files += 1
        elif self._download(run, plan):
            return  # the finisher ends it
        self._file_done(run, plan.path)

    def _is_present(self, run, plan):
        """``is_present``, its bodiless request (when it needs one) retried
        as any other; a file it fails for is downloaded, and the download
        reports the error."""
        policy = RetryPolicy(self.settings.retries, self.gate)
        connection = self.local.connection
        try:
            return is_present(plan, self.settings.presence,
                              lambda: policy.run(lambda: connection.head(plan.url + "?cnt=0")))
        except FetchError:
            return False
        finally:
            with self.condition:
                run.attempts += policy.attempts

    def _claim(self, path):
        """Wait until no other task of this run has the file at ``path`` in
        hand: the same item twice in the input (two lists concatenated) must
        not have two workers writing one temporary.  The file is then
        checked again, and usually found present."""
        with self.condition:
            while path in self.paths_busy and not self.cancel.is_set():
                self.condition.wait()
            self.paths_busy.add(path)

    def _file_done(self, run, path):
        with self.condition:
            self.paths_busy.discard(path)
            self.condition.notify_all()
            run.outstanding -= 1
            done = run.outstanding == 0
        if done:
            self._end(run)

    def _finish_files(self):
        """The finisher thread: fsync, date and rename downloaded files, so
        that workers go straight on to their next request (an fsync costs
        milliseconds under concurrent writers: measured 4 ms between a
        worker's requests on ext4)."""
        while True:
            run, transfer = self.finishing.get()
            try:
                transfer.install()
                with self.condition:
                    run.fetched_files += 1
            except FetchError as error:
                with self.condition:
                    run.fail(error, transfer.plan.name)
            self._file_done(run, transfer.plan.path)

    def _download(self, run, plan):
        policy = RetryPolicy(self.settings.retries, self.gate)
        slot = self.progress.begin(run.job["id"], plan.name, plan.size)
        transfer = Transfer(self.local.connection, plan, self.cancel, slot.add,
                            self.settings.presence, self.settings.fsync)
        with self.condition:
            self.transfers.add(transfer)
        try:
            directory = os.path.dirname(plan.path)
            if directory not in run.directories:
                os.makedirs(directory, exist_ok=True)
                run.directories.add(directory)
            self._with_room(lambda: policy.run(transfer.attempt), directory,
                            plan.size or 1, transfer)
            self.finishing.put((run, transfer))
            return True
        except Cancelled:
            run.interrupted = True
        except FetchError as error:
            with self.condition:
                run.fail(explain_refusal(error, plan), plan.name)
        except OSError as error:
            with self.condition:
                run.fail(FetchError(f"cannot create {os.path.dirname(plan.path)}: "
                                    f"{error.strerror}", False, local=True), plan.name)
        finally:
            with self.condition:
                self.transfers.discard(transfer)
                self.condition.notify_all()  # for _room_again
                run.bytes += transfer.fetched
                run.attempts += policy.attempts
            self.progress.end(slot)
        return False

    def _with_room(self, write, directory, needed=4096, transfer=None):
        """``write()``, which writes ``needed`` bytes in ``directory``.  When
        it meets a full disk it is tried again if there is room by then, or
        once the other transfers writing have made some: one may fail and
        give its space back, and a job that fits must not fail for another
        that does not (SPACE_RETRIES times at most)."""
        for _ in range(SPACE_RETRIES):
            try:
                return write()
            except (FetchError, OSError) as error:
                if not _no_space(error) or not self._room_again(directory, needed, transfer):
                    raise
        return write()

    def _room_again(self, directory, needed, transfer):
        """Is there ``needed`` bytes of room in ``directory`` now, or once
        the other transfers writing (not ``transfer``) have ended or met a
        full disk themselves?  False when none is left to give space back."""
        with self.condition:
            self.waiting_for_space.add(transfer)
            try:
                while free_bytes(directory) < needed:
                    writing = self.transfers - self.waiting_for_space
                    if not writing:
                        return False
                    while writing <= self.transfers - self.waiting_for_space:
                        if self.cancel.is_set():
                            raise Cancelled()
                        self.condition.wait()
                return True
            finally:
                self.waiting_for_space.discard(transfer)
                self.condition.notify_all()

    # -- events -----------------------------------------------------------------
    def _outcome_event(self, run):
        details = {"files": run.fetched_files, "files_skipped": run.skipped_files,
                   "bytes": run.bytes, "seconds": round(time.monotonic() - run.started, 3),
                   "attempts": run.attempts}
        if run.interrupted:  # said even when some files failed before it
            run.fail(FetchError("interrupted before it finished; run again to resume", True))
        if not run.failures:
            return make_event("completed", run.job, **details, **run.outcome)
        return make_event("failed", run.job, **details, **run.failures.details())


def _no_space(error):
    if isinstance(error, FetchError):
        return error.no_space
    return error.errno in NO_SPACE


def _check_destdir(destdir):
    if not os.path.isdir(destdir):
        raise FetchError(f"destination {destdir} is not a directory (disk not mounted?)",
                         True, local=True)

