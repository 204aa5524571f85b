"""ia-fetch's worker pool: N workers, N connections, items and files mixed.

Each worker owns one keep-alive HTTP session, so the concurrency limit is
the number of connections to archive.org whatever mix of metadata requests
and files they serve.  A job's metadata request turns it into file tasks,
which go to the shared ``files`` queue; workers take file tasks before new
jobs, so a 200-file item is spread over all workers and the number of items
in flight stays small.  New jobs wait in a short queue filled by the reader
thread, whose blocking is the backpressure on the pipe.

A request that failed and may be tried again does not hold its worker: its
task waits in ``delayed`` until its time (the server's Retry-After, else a
backoff), and the worker serves other tasks meanwhile.  Tasks are queued by
the host their next request goes to, and a worker takes one only when
``HostPacing`` lets a request go to that host: while a host is paused, the
workers serve the others (other items' files, the metadata of new jobs).
"""

import collections
import dataclasses
import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from iatools import errors
from iatools.bwlimit import BandwidthLimit
from iatools.failures import Failures, explain_refusal
from iatools.hostpacing import HostPaused
from iatools.http import (ATTEMPT_ERRORS, Cancelled, FetchError, RetryPolicy, as_fetch_error,
                          is_refusal)
from iatools.jobs import make_event
from iatools.localtree import delete_files, unlisted_files
from iatools.locks import Locked
from iatools.selection import add_version, fetch_metadata, listed_names, plan_files
from iatools.sizes import free_bytes
from iatools.storagenodes import file_url, node_base
from iatools.taskqueue import TaskQueue
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
    #: completed's "reason", "files_removed", "files_deleted" (see iatools(7))
    outcome: dict = field(default_factory=dict)
    node_base: str = None  # its directory on its storage node (storagenodes)

    def fail(self, error, file_name=None):
        """Record a failure of the job (``file_name`` None) or of one file;
        every file's is reported, and the job's other files go on."""
        self.failures.add(error, file_name)


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


class Pool:
    def __init__(self, settings, emit, cancel, pacing, progress, locks):
        self.settings = settings
        self.locks = locks
        self.emit = emit
        self.cancel = cancel
        self.pacing = pacing
        self.policy = RetryPolicy(settings.retries, pacing)
        self.bandwidth = BandwidthLimit(settings.bwlimit, cancel) if settings.bwlimit else None
        self.progress = progress
        self.condition = threading.Condition()
        self.queue = TaskQueue(pacing, self._host_of)
        self.parked = {}  # path -> tasks waiting for another task of that path
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
        self.workers = 0
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
        self.working = self.workers = count
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
            self.local.connection = self.settings.new_connection(self.pacing)
            while (taken := self._next_task()) is not None:
                task, host = taken
                try:
                    if isinstance(task, FileTask):
                        self._run_file(task)
                    else:
                        self._run_plan(task)
                finally:
                    self._release(host)
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
        """(task, the host whose request count it holds, or None), or None
        when the work is over.

        A worker goes on with the host it just used (its connection is
        open), else takes a host nobody is using, else starts a new job
        while fewer than twice as many jobs as workers are in flight, and
        only then joins others on a host: a new connection costs a CONNECT
        and a TLS handshake, but a big item's files must still spread over
        every worker.  (Twice: jobs wait on metadata or on a retry as well;
        with as many as workers, small items still took 1.7 connections
        each, with twice 1.05.)"""
        with self.condition:
            while True:
                self.queue.release_due(everything=self.cancel.is_set())
                own = getattr(self.local, "last_host", None)
                taken = self.queue.take(self.queue.preferred_hosts(own), self._may_send)
                if taken is None and self.active < 2 * self.workers:
                    taken = self._new_job()
                taken = taken or self.queue.take(self.queue.hosts(), self._may_send) \
                    or self._new_job()
                if taken is not None:
                    task, self.local.last_host = taken
                    # Once cancelled, tasks only end: they hold no request count.
                    return task, (None if self.cancel.is_set() else self.local.last_host)
                if self.active == 0 and (self.input_done or self._stopping()):
                    self.condition.notify_all()
                    return None
                self.condition.wait(self._until_next())

    def _until_next(self):
        """Seconds until a delayed task or a paused host is due, or None."""
        moment = self.queue.next_moment([self._api_host()] if self.new_jobs else ())
        return None if moment is None else max(moment - time.monotonic(), 0.001)

    def _new_job(self):
        api_host = self._api_host()
        if not self.new_jobs or self._stopping() or not self._may_send(api_host):
            return None
        self.active += 1
        job = self.new_jobs.popleft()
        self.condition.notify_all()
        return PlanTask(JobRun(job)), api_host

    def _may_send(self, host):
        """Count a request to ``host`` if the pacing allows one now.  Once
        the run is cancelled tasks only end, sending nothing: any may go."""
        return self.cancel.is_set() or self.pacing.try_acquire(host)

    def _release(self, host):
        """Give back the request count a task held, and wake the workers if
        one may be waiting for it: waking them after every task cost CPU
        for nothing (9 % of the time the GIL was held, on small files)."""
        with self.condition:
            if host is None or self.cancel.is_set():
                return
            self.pacing.release(host)
            if self.queue.waiting_for(host) or (self.new_jobs and host == self._api_host()):
                self.condition.notify_all()

    def _host_of(self, task):
        """The host of a task's next request."""
        url = task.url if isinstance(task, FileTask) else None
        return urlsplit(url).hostname if url else self._api_host()

    def _later(self, task, seconds):
        """Send ``task``'s request again no sooner than ``seconds`` from now."""
        with self.condition:
            self.queue.later(task, seconds)
            self.condition.notify_all()
        return True

    def _api_host(self):
        return urlsplit(self.settings.base_url).hostname

    def _wait_again(self, task, exc):
        """Hold ``task`` back after ``exc``, a paused host or a failed
        attempt: None when it waits to be tried again, else the FetchError
        it failed with for good."""
        if isinstance(exc, HostPaused):
            self._later(task, exc.until - time.monotonic())
            return None
        error = as_fetch_error(exc)
        task.failures += 1
        delay = self.policy.delay(error, task.failures, self.local.connection.last_host)
        if delay is None:
            return error
        self._later(task, delay)
        return None

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
    def _run_plan(self, task):
        """A job's metadata request, then its files; a refused request
        waits in ``delayed`` (the job keeps its lock meanwhile)."""
        run = task.run
        if not task.begun:
            if not self._begin(run):
                return
            task.begun = True
        plans = []
        if self.cancel.is_set():
            run.interrupted = True
        else:
            with self.condition:
                run.attempts += 1
            try:
                plans = self._plan(run)
            except Cancelled:
                run.interrupted = True
            except (HostPaused, *ATTEMPT_ERRORS) as exc:
                error = self._wait_again(task, exc)
                if error is None:
                    return
                run.fail(error)
        if self.settings.dry_run:
            self._planned(run, plans)
        else:
            self._queue_files(run, plans)

    def _begin(self, run):
        """Lock the job's item and say it started (check the destination,
        in a dry run); False when the job has ended already."""
        if self.settings.dry_run:
            try:
                _check_destdir(run.job["destdir"])
            except FetchError as error:
                run.fail(error)
                self._planned(run, [])
                return False
            return True
        if not self._lock(run):
            return False
        with self.condition:
            self.runs.add(run)
        self.emit(make_event("started", run.job))
        return True

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

    def _plan(self, run):
        job = run.job
        destdir = job["destdir"]
        metadata = fetch_metadata(self.local.connection, self.settings.base_url, job["id"])
        run.node_base = node_base(metadata, urlsplit(self.settings.base_url).scheme)
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
            run.outcome["reason"] = "no files match the filters"
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
            run.outcome["files_removed"] = removed

    def _delete_removed(self, run):
        """--delete, once every file of the item is in place."""
        removed = run.outcome.get("files_removed")
        if removed and self.settings.delete and not run.failures and not run.interrupted:
            item_dir = os.path.join(run.job["destdir"], run.job["id"])
            run.outcome["files_deleted"] = delete_files(item_dir, removed)

    def _queue_files(self, run, plans):
        if not plans:
            return self._end(run)
        with self.condition:
            run.outstanding = len(plans)
            for plan in plans:
                url = file_url(run.node_base, plan.name) if run.node_base else plan.url
                self.queue.add(FileTask(run, plan, url))
            self.condition.notify_all()

    def _planned(self, run, plans):
        """End a dry run's job with its planned event."""
        if run.interrupted and not run.failures:
            run.fail(FetchError("interrupted", True))
        wanted = [p for p in plans if not self._present_now(run, p)]
        details = {"files": len(wanted), "files_skipped": len(plans) - len(wanted),
                   "bytes": sum(p.size or 0 for p in wanted),
                   "plan": [{"name": p.name, "size": p.size} for p in wanted]}
        unknown = sum(p.size is None for p in wanted)
        if unknown:  # their bytes are not in "bytes"; the plan shows them as null
            details["files_unknown_size"] = unknown
        details.update(run.failures.details())
        details.update((k, v) for k, v in run.outcome.items() if k in ("reason", "files_removed"))
        self._job_done(make_event("planned", run.job, **details))

    # -- one file ---------------------------------------------------------------
    def _run_file(self, task):
        run, plan = task.run, task.plan
        if not task.claimed and not self._claim(task):
            return
        if self.cancel.is_set():
            run.interrupted = True
        elif not task.checked and not self._check_presence(task):
            return  # its HEAD was refused: it waits to ask again
        elif task.present:
            with self.condition:
                run.skipped_files += 1
        elif self._download(task):
            return  # the finisher ends it, or it waits to be tried again
        self._file_done(run, plan.path)

    def _check_presence(self, task):
        """Decide whether the task's file is in place already (``present``);
        False when the HEAD this needed failed and waits to be tried again.
        A file the HEAD fails for for good is downloaded, and the download
        reports the error."""
        try:
            task.present = is_present(task.plan, self.settings.presence,
                                      lambda: self._head(task.run, task.plan))
        except (HostPaused, *ATTEMPT_ERRORS) as exc:
            if self._wait_again(task, exc) is None:
                return False
            task.present = False
        task.checked = True
        return True

    def _present_now(self, run, plan):
        """``is_present`` for a dry run: a HEAD that fails counts the file
        as wanted."""
        try:
            return is_present(plan, self.settings.presence, lambda: self._head(run, plan))
        except (HostPaused, *ATTEMPT_ERRORS):
            return False

    def _head(self, run, plan):
        with self.condition:
            run.attempts += 1
        return self.local.connection.head(plan.url + "?cnt=0")

    def _claim(self, task):
        """Make the file at the task's path this task's; False when another
        task of this run has it in hand: the same item twice in the input
        (two lists concatenated) must not have two workers writing one
        temporary.  The task waits, parked, until that one ends, and then
        usually finds the file present."""
        path = task.plan.path
        with self.condition:
            if path in self.paths_busy:
                self.parked.setdefault(path, []).append(task)
                return False
            self.paths_busy.add(path)
            task.claimed = True
            return True

    def _file_done(self, run, path):
        with self.condition:
            self.paths_busy.discard(path)
            parked = self.parked.pop(path, ())
            for task in parked:
                self.queue.add(task)
            if parked:
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

    def _download(self, task):
        """One attempt at the task's file; True when it went to the
        finisher or waits to be tried again, False when the file is over."""
        run, plan = task.run, task.plan
        slot = self.progress.begin(run.job["id"], plan.name, plan.size)
        transfer = Transfer(self.local.connection, dataclasses.replace(plan, url=task.url),
                            self.cancel, self._byte_counter(slot), self.settings.presence,
                            self.settings.fsync)
        with self.condition:
            self.transfers.add(transfer)
            run.attempts += 1
        try:
            directory = self._make_directory(run, plan)
            self._with_room(transfer.attempt, directory, plan.size or 1, transfer)
            self.finishing.put((run, transfer))
            return True
        except Cancelled:
            run.interrupted = True
        except (HostPaused, *ATTEMPT_ERRORS) as exc:
            return self._file_failed(task, exc)
        finally:
            with self.condition:
                self.transfers.discard(transfer)
                if self.waiting_for_space:
                    # for _room_again (waking every idle worker after each
                    # file was 9 % of the GIL's time on small files)
                    self.condition.notify_all()
                run.bytes += transfer.fetched
            self.progress.end(slot)
        return False

    def _byte_counter(self, slot):
        """What a transfer calls with each chunk's size: the progress, and
        the --bwlimit, which may hold the worker back."""
        if self.bandwidth is None:
            return slot.add

        def count(nbytes):
            slot.add(nbytes)
            self.bandwidth.take(nbytes)
        return count

    def _file_failed(self, task, exc):
        """Try the file again later, or fail it.  A failure on the storage
        node turns the task to /download/, which knows where the item is
        now; a permanent one there (the item moved) is no failure yet.  A
        refusal is no sign of a move: the node asked for that request again,
        later, and its pacing stays the node's."""
        if not isinstance(exc, HostPaused):
            error = as_fetch_error(exc)
            from_node = task.url != task.plan.url
            if not is_refusal(error.http_status):
                task.url = task.plan.url
            if from_node and not error.retryable and not error.local:
                return self._later(task, 0)
        error = self._wait_again(task, exc)
        if error is None:
            return True
        with self.condition:
            task.run.fail(explain_refusal(error, task.plan), task.plan.name)
        return False

    def _make_directory(self, run, plan):
        directory = os.path.dirname(plan.path)
        if directory not in run.directories:
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as error:
                raise FetchError(f"cannot create {directory}: {error.strerror}", False,
                                 local=True) from None
            run.directories.add(directory)
        return directory

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

