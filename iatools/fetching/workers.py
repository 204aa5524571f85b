"""ia-fetch's worker threads, and which task each takes next.

Each worker owns one keep-alive HTTP session, so the concurrency limit is
the number of connections to archive.org whatever mix of metadata requests
and files they serve.  Tasks are queued by the host their next request
goes to (taskqueue), and a worker takes one only when ``HostPacing`` lets
a request go to that host: while a host is paused, the workers serve the
others.  A request that failed and may be tried again does not hold its
worker: its task waits, delayed, until its time (the server's Retry-After,
else a backoff), and the worker serves other tasks meanwhile.  What a task
does is the pool's (pool.py).
"""

import threading
import time
import traceback
from urllib.parse import urlsplit

from iatools.base import errors
from iatools.fetching.hostpacing import HostPaused
from iatools.fetching.http import RetryPolicy, as_fetch_error
from iatools.fetching.jobrun import FileTask, JobRun, PlanTask
from iatools.fetching.taskqueue import NewJobs, TaskQueue


class Workers:
    """The worker threads, the tasks they wait for and the jobs in flight.
    ``condition`` guards them; the pool guards its own fields with it too."""

    def __init__(self, settings, cancel, pacing):
        self.settings = settings
        self.cancel = cancel
        self.pacing = pacing
        self.policy = RetryPolicy(settings.retries, pacing)
        self.condition = threading.Condition()
        self.tasks = TaskQueue(pacing, self._host_of)
        self.new_jobs = NewJobs(self.condition, cancel, settings.read_ahead)
        self.jobs_in_flight = 0  # taken by a worker, not yet ended
        self.own = threading.local()  # a worker's connection, the host it last used
        self.left = 0  # workers not yet ended
        self.count = 0
        self.crashed = False  # a worker died of an unexpected error
        self.threads = []

    def start(self, count, run_task, on_crash, on_finished):
        """Start ``count`` workers, each calling ``run_task(task)`` for the
        tasks it takes; a worker that raises calls ``on_crash()``; the last
        one to end calls ``on_finished()``."""
        self.left = self.count = count
        self.threads = [threading.Thread(target=self._work, name=f"worker-{i}", daemon=True,
                                         args=(run_task, on_crash, on_finished))
                        for i in range(count)]
        for thread in self.threads:
            thread.start()

    def alive(self):
        with self.condition:
            return self.left > 0

    @property
    def connection(self):
        """The calling worker's connection."""
        return self.own.connection

    def add(self, tasks):
        """Queue ``tasks`` to be taken now."""
        with self.condition:
            for task in tasks:
                self.tasks.add(task)
            if tasks:
                self.condition.notify_all()

    def later(self, task, seconds):
        """Send ``task``'s request again no sooner than ``seconds`` from now."""
        with self.condition:
            self.tasks.later(task, seconds)
            self.condition.notify_all()
        return True

    def wait_again(self, task, exc):
        """Hold ``task`` back after ``exc``, a paused host or a failed
        attempt: None when it waits to be tried again, else the FetchError
        it failed with for good."""
        if isinstance(exc, HostPaused):
            self.later(task, exc.until - time.monotonic())
            return None
        error = as_fetch_error(exc)
        task.failures += 1
        delay = self.policy.delay(error, task.failures, self.connection.last_host)
        if delay is None:
            return error
        self.later(task, delay)
        return None

    def job_ended(self):
        with self.condition:
            self.jobs_in_flight -= 1
            self.condition.notify_all()

    def _work(self, run_task, on_crash, on_finished):
        try:
            self.own.connection = self.settings.new_connection(self.pacing)
            while (taken := self._next_task()) is not None:
                task, host = taken
                try:
                    run_task(task)
                finally:
                    self._release(host)
        except Exception:  # a bug: stop the run rather than wait forever for its job
            errors.error(f"internal error in {threading.current_thread().name}, stopping:\n"
                         + traceback.format_exc().rstrip())
            self.crashed = True
            on_crash()
        finally:
            with self.condition:
                self.left -= 1
                last = self.left == 0
            if last:
                on_finished()

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
                self.tasks.release_due(everything=self.cancel.is_set())
                own = getattr(self.own, "last_host", None)
                taken = self.tasks.take(self.tasks.preferred_hosts(own), self._may_send)
                if taken is None and self.jobs_in_flight < 2 * self.count:
                    taken = self._new_job()
                taken = taken or self.tasks.take(self.tasks.hosts(), self._may_send) \
                    or self._new_job()
                if taken is not None:
                    task, self.own.last_host = taken
                    # Once cancelled, tasks only end: they hold no request count.
                    return task, (None if self.cancel.is_set() else self.own.last_host)
                if self.jobs_in_flight == 0 and self.new_jobs.over():
                    self.condition.notify_all()
                    return None
                self.condition.wait(self._until_next())

    def _until_next(self):
        """Seconds until a delayed task or a paused host is due, or None."""
        moment = self.tasks.next_moment([self._api_host()] if self.new_jobs.has_jobs() else ())
        return None if moment is None else max(moment - time.monotonic(), 0.001)

    def _new_job(self):
        api_host = self._api_host()
        if not self.new_jobs.has_jobs() or self.new_jobs.stopping() \
                or not self._may_send(api_host):
            return None
        self.jobs_in_flight += 1
        return PlanTask(JobRun(self.new_jobs.take())), api_host

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
            if self.tasks.waiting_for(host) or (self.new_jobs.has_jobs()
                                                and host == self._api_host()):
                self.condition.notify_all()

    def _host_of(self, task):
        """The host of a task's next request."""
        url = task.url if isinstance(task, FileTask) else None
        return urlsplit(url).hostname if url else self._api_host()

    def _api_host(self):
        return urlsplit(self.settings.base_url).hostname
