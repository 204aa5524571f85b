"""The tasks ia-fetch's workers wait for: ready ones, queued by the host
their next request goes to, and delayed ones, which may not be tried again
before their time (a Retry-After, a backoff, a paused host).

Not thread-safe: the pool's lock guards every call.  A worker takes a task
only for a host the ``HostPacing`` lets a request go to now, so while one
host is paused the workers serve the others.
"""

import collections
import heapq
import itertools
import time


class TaskQueue:
    def __init__(self, pacing, host_of):
        self.pacing = pacing
        self._host_of = host_of  # task -> the host of its next request
        self._ready = {}  # host -> deque of tasks, hosts in the order first queued
        self._delayed = []  # heap of (not before, sequence, task)
        self._sequence = itertools.count()

    def add(self, task):
        self._ready.setdefault(self._host_of(task), collections.deque()).append(task)

    def later(self, task, seconds):
        """Queue ``task`` once ``seconds`` have passed."""
        if seconds <= 0:
            return self.add(task)
        heapq.heappush(self._delayed, (time.monotonic() + seconds, next(self._sequence), task))

    def release_due(self, everything=False):
        """Make the delayed tasks whose time has come ready (``everything``:
        all of them, as when the run is cancelled)."""
        now = time.monotonic()
        while self._delayed and (everything or self._delayed[0][0] <= now):
            self.add(heapq.heappop(self._delayed)[2])

    def waiting_for(self, host):
        """Are ready tasks waiting for a request to ``host``?"""
        return host in self._ready

    def hosts(self):
        return list(self._ready)

    def preferred_hosts(self, own):
        """``own`` (the host a worker just used: its connection is open),
        then the hosts nobody is using, among those with ready tasks."""
        hosts = [own] if own in self._ready else []
        return hosts + [host for host in self._ready if not self.pacing.busy(host)]

    def take(self, hosts, may_send):
        """(task, host) for the first of ``hosts`` that ``may_send(host)``
        (which counts the request), or None."""
        for host in hosts:
            if may_send(host):
                tasks = self._ready[host]
                task = tasks.popleft()
                if not tasks:
                    del self._ready[host]
                return task, host
        return None

    def next_moment(self, also=()):
        """When a delayed task or a paused host's queue (or one of the hosts
        ``also``) is due, time.monotonic(); None when nothing is: a worker
        ending its task wakes the others."""
        now = time.monotonic()
        moments = [self.pacing.ready_at(host) for host in (*self._ready, *also)]
        if self._delayed:
            moments.append(self._delayed[0][0])
        future = [moment for moment in moments if moment > now]
        return min(future) if future else None


class NewJobs:
    """The jobs read that no worker has begun yet: at most ``limit``, so
    that the reader offering one more blocks, which is the backpressure on
    the pipe.  It shares the pool's ``condition``: workers wait on it for
    new jobs; ``has_jobs`` and ``take`` are called with it held."""

    def __init__(self, condition, cancel, limit):
        self.condition = condition
        self.cancel = cancel
        self.limit = limit
        self._jobs = collections.deque()
        self._input_done = False
        self._stop_taking = False

    def offer(self, job):
        """Queue a job, blocking while the queue is full; False when the
        run takes no more jobs."""
        with self.condition:
            while len(self._jobs) >= self.limit and not self.stopping():
                self.condition.wait()
            if self.stopping():
                return False
            self._jobs.append(job)
            self.condition.notify_all()
            return True

    def close(self):
        """The input has ended."""
        with self.condition:
            self._input_done = True
            self.condition.notify_all()

    def stop_taking(self):
        """Begin no more jobs (--halt soon)."""
        with self.condition:
            self._stop_taking = True
            self.condition.notify_all()

    def stopping(self):
        return self._stop_taking or self.cancel.is_set()

    def over(self):
        """No job will come any more."""
        return self._input_done or self.stopping()

    def has_jobs(self):
        return bool(self._jobs)

    def take(self):
        """The oldest job; one more may be offered."""
        job = self._jobs.popleft()
        self.condition.notify_all()
        return job
