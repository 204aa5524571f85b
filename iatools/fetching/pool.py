"""ia-fetch's worker pool: N workers, N connections, items and files mixed.

A job's metadata request turns it into file tasks, which go to the shared
task queue (taskqueue); workers take file tasks before new jobs, so a
200-file item is spread over all workers and the number of items in flight
stays small.  New jobs wait in a short queue filled by the reader thread,
whose blocking is the backpressure on the pipe (taskqueue.NewJobs).  Which
task a worker takes next: workers; a job's run and its outcome: jobrun;
who gets a full disk's space: diskroom.  The pool wires them, and does
what each task does.
"""

import dataclasses
import os
import queue
import threading
import time
from urllib.parse import urlsplit

from iatools.contract.jobs import make_event
from iatools.fetching.bwlimit import BandwidthLimit
from iatools.fetching.diskroom import DiskRoom
from iatools.fetching.failures import explain_refusal
from iatools.fetching.hostpacing import HostPaused
from iatools.fetching.http import (ATTEMPT_ERRORS, Cancelled, DiskUnavailableError, FetchError,
                                   PermanentError, as_fetch_error, is_refusal)
from iatools.fetching.jobrun import FileTask, check_destdir, outcome_event, planned_event
from iatools.fetching.locks import Locked
from iatools.fetching.selection import add_version, fetch_metadata, plan_files
from iatools.fetching.storagenodes import file_url, node_base
from iatools.fetching.transfer import Transfer, ensure_inside, is_present
from iatools.fetching.workers import Workers


class Pool:
    def __init__(self, settings, emit, cancel, pacing, progress, locks):
        self.settings = settings
        self.locks = locks
        self.emit = emit
        self.cancel = cancel
        self.bandwidth = BandwidthLimit(settings.bwlimit, cancel) if settings.bwlimit else None
        self.progress = progress
        self.workers = Workers(settings, cancel, pacing)
        self.condition = self.workers.condition  # guards the fields below too
        self.disk_room = DiskRoom(cancel)
        self.parked = {}  # path -> tasks waiting for another task of that path
        self.paths_busy = set()  # files being fetched or installed
        # Jobs past their lock (in a dry run: past their destination's
        # check), not yet ended: those ``abandon`` ends.
        self.locked_runs = set()
        self.cancelled_at = None
        self.finishing = queue.SimpleQueue()  # (run, transfer) downloaded and checked
        self.finisher = None

    # -- fed by the reader thread, and the main thread ------------------------
    def offer(self, job):
        """Queue a job; blocks while the queue is full (backpressure)."""
        return self.workers.new_jobs.offer(job)

    def close_input(self):
        self.workers.new_jobs.close()

    def stop_taking_jobs(self):
        self.workers.new_jobs.stop_taking()

    def cancel_now(self):
        """Stop everything: no new work, and transfers cut mid-read."""
        self.cancel.set()
        with self.condition:
            self.cancelled_at = self.cancelled_at or time.monotonic()
            self.condition.notify_all()
        self.disk_room.abort_all()

    def overdue(self, grace):
        """True when workers are still busy ``grace`` seconds after a cancel."""
        return self.cancelled_at is not None and time.monotonic() - self.cancelled_at > grace

    def abandon(self):
        """End the jobs still in flight with their interrupted events now.
        A request that has not had its response headers yet cannot be cut
        (only a transfer's socket is known), and its worker would notice the
        cancel only at --timeout; the process exits without it."""
        with self.condition:
            runs = list(self.locked_runs)
        for run in runs:
            run.interrupted = True
            self._end(run)

    def start(self, count, on_finished):
        """Start ``count`` workers; the last one to finish calls ``on_finished()``."""
        self.workers.start(count, self._run_task, self.cancel_now, on_finished)
        # A job stays in flight until its last file is finished, so the
        # finisher is idle whenever the workers are all gone.
        self.finisher = threading.Thread(target=self._finish_files, name="finisher", daemon=True)
        self.finisher.start()

    def end_finisher(self):
        """Let the finisher end once the files handed to it are done."""
        self.finishing.put(None)

    def join(self, patience):
        """Wait for the threads of the pool to end (``end_finisher`` first),
        ``patience`` seconds at most: a worker abandoned while waiting for
        response headers ends at --timeout at the latest, and need not be
        waited for (a daemon; its job has ended)."""
        deadline = time.monotonic() + patience
        for thread in [*self.workers.threads, self.finisher]:
            thread.join(max(0.0, deadline - time.monotonic()))

    def alive(self):
        return self.workers.alive()

    @property
    def crashed(self):
        """Whether a worker died of an unexpected error (a bug)."""
        return self.workers.crashed

    def _run_task(self, task):
        if isinstance(task, FileTask):
            self._run_file(task)
        else:
            self._run_plan(task)

    def _job_done(self, event):
        """End a job that never took its item's lock.  The event goes out
        first: once no job is in flight the workers may end, and the run
        with them, before an event emitted after it was queued."""
        self.emit(event)
        self.workers.job_ended()

    def _end(self, run):
        """End a locked job with its outcome event, once: a job that
        ``abandon`` ended already is not ended again by its worker."""
        if not self._ending(run):
            return
        if self.settings.delete:
            run.delete_removed()
        if run.lock is not None:  # (a dry run takes none)
            self.locks.release(run.lock)
        self._job_done(outcome_event(run))

    def _ending(self, run):
        """Is this the first time the job ends?  It may have been abandoned."""
        with self.condition:
            if run not in self.locked_runs:
                return False
            self.locked_runs.discard(run)
            return True

    # -- one job ----------------------------------------------------------------
    def _run_plan(self, task):
        """A job's metadata request, then its files; a refused request
        waits, delayed (the job keeps its lock meanwhile)."""
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
                error = self.workers.wait_again(task, exc)
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
                check_destdir(run.job["destdir"])
            except FetchError as error:
                run.fail(error)
                self._job_done(planned_event(run, [], []))
                return False
            with self.condition:
                self.locked_runs.add(run)
            return True
        if not self._lock(run):
            return False
        with self.condition:
            self.locked_runs.add(run)
        self.emit(make_event("started", run.job))
        return True

    def _lock(self, run):
        """Take the item's lock; else end the job (skipped or failed)."""
        job = run.job
        try:
            check_destdir(job["destdir"])
            run.lock = self._acquire(job)
            return True
        except Locked as locked:
            self._job_done(make_event("skipped", job, reason="locked", lock_owner=locked.owner))
        except Cancelled:  # while waiting for room for the lock file
            run.interrupted = True
            self._job_done(outcome_event(run))
        except FetchError as error:
            run.fail(error)
            self._job_done(outcome_event(run))
        except OSError as error:
            run.fail(DiskUnavailableError(
                f"cannot lock the item in {job['destdir']}: {error.strerror}"))
            self._job_done(outcome_event(run))
        return False

    def _acquire(self, job):
        """The item's lock; a lock file that meets a full disk is tried
        again as a file is (``DiskRoom.with_room``)."""
        return self.disk_room.with_room(lambda: self.locks.acquire(job["destdir"], job["id"]),
                                        job["destdir"])

    def _plan(self, run):
        job = run.job
        destdir = job["destdir"]
        metadata = fetch_metadata(self.workers.connection, self.settings.base_url,
                                  job["id"])
        run.node_base = node_base(metadata, urlsplit(self.settings.base_url).scheme)
        plans, unsafe = plan_files(self.settings.session, metadata, job, destdir,
                                   self.settings.filters, self.settings.flat)
        for name, problem in unsafe:
            run.fail(PermanentError(
                f"unsafe file name in the metadata, not downloaded: {problem}"), name)
        run.failures.planned = len(plans) + len(unsafe)
        add_version(job, metadata)
        if not plans and not unsafe:
            # As ia download: an outcome, not a failure ("mirror only the
            # PDFs" must not fail every item without one).
            run.outcome["reason"] = "no files match the filters"
        ensure_inside(destdir, {os.path.dirname(plan.path) for plan in plans})
        if not self.settings.flat:  # where files of several items share a directory
            run.find_removed(metadata)
        return plans

    def _queue_files(self, run, plans):
        if not plans:
            return self._end(run)
        with self.condition:
            run.outstanding = len(plans)
            self.workers.add([FileTask(run, plan, file_url(run.node_base, plan.name)
                                       if run.node_base else plan.url) for plan in plans])

    def _planned(self, run, plans):
        """End a dry run's job with its planned event, unless it was
        abandoned (interrupted) meanwhile."""
        wanted = [p for p in plans if not self._present_now(run, p)]
        if self._ending(run):
            self._job_done(planned_event(run, plans, wanted))

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
            task.present = is_present(task.plan, self.settings.keep_rule,
                                      lambda: self._head(task.run, task.plan))
        except (HostPaused, *ATTEMPT_ERRORS) as exc:
            if self.workers.wait_again(task, exc) is None:
                return False
            task.present = False
        task.checked = True
        return True

    def _present_now(self, run, plan):
        """``is_present`` for a dry run: a HEAD that fails counts the file
        as wanted."""
        try:
            return is_present(plan, self.settings.keep_rule, lambda: self._head(run, plan))
        except (HostPaused, *ATTEMPT_ERRORS):
            return False

    def _head(self, run, plan):
        with self.condition:
            run.attempts += 1
        return self.workers.connection.head(plan.url + "?cnt=0")

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
            self.workers.add(self.parked.pop(path, ()))  # the condition is reentrant
            run.outstanding -= 1
            done = run.outstanding == 0
        if done:
            self._end(run)

    def _finish_files(self):
        """The finisher thread: fsync, date and rename downloaded files, so
        that workers go straight on to their next request (an fsync costs
        milliseconds under concurrent writers: measured 4 ms between a
        worker's requests on ext4)."""
        while (finished := self.finishing.get()) is not None:
            run, transfer = finished
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
        transfer = Transfer(self.workers.connection,
                            dataclasses.replace(plan, url=task.url), self.cancel,
                            self._byte_counter(slot), self.settings.keep_rule, self.settings.fsync)
        self.disk_room.started(transfer)
        with self.condition:
            run.attempts += 1
        try:
            directory = run.make_directory(plan)
            self.disk_room.with_room(transfer.attempt, directory, plan.size or 1, transfer)
            self.finishing.put((run, transfer))
            return True
        except Cancelled:
            run.interrupted = True
        except (HostPaused, *ATTEMPT_ERRORS) as exc:
            return self._file_failed(task, exc)
        finally:
            self.disk_room.ended(transfer)
            with self.condition:
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
                return self.workers.later(task, 0)
        error = self.workers.wait_again(task, exc)
        if error is None:
            return True
        with self.condition:
            task.run.fail(explain_refusal(error, task.plan), task.plan.name)
        return False
