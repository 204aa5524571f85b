"""A fetch in this process: jobs in, events out (ia-fetch's engine, and
the Python API ``iatools.fetch``).

    with fetch(jobs, workers=8, destdir="/data", glob="*.pdf") as events:
        for event in events:
            ...

Threads: a feeder takes the jobs from their iterable and offers them to the
pool, blocking while the pool is busy (the backpressure); N workers and a
finisher (pool.py); a supervisor that keeps the item locks fresh and, after
a stop, gives up the jobs still in flight.  Events leave through one queue,
in the order they happened, to whoever iterates.  No signal handlers: a
Fetch works from any thread; ia-fetch installs its own and calls ``stop``.
"""

import queue
import threading

from iatools.base import errors
from iatools.contract import jsonl
from iatools.contract.jobs import is_failure, job_of_record
from iatools.fetching.hostpacing import HostPacing
from iatools.fetching.locks import ItemLocks
from iatools.fetching.pool import Pool
from iatools.fetching.progress import Progress
from iatools.fetching.settings import DEFAULT_WORKERS, settings_from_keywords

#: Seconds after a stop before jobs still in flight are given up: enough
#: for cut transfers to save what they received and for the finisher to
#: rename what was whole; a request still waiting for its response headers
#: would otherwise hold the run until --timeout.
ABANDON_AFTER = 1.0
#: How often the supervisor refreshes the item locks' dates (``ItemLocks``
#: writes only once a minute) and looks for an overdue stop.
_TICK = 0.25


def fetch(jobs, *, workers=DEFAULT_WORKERS, destdir=None, **options):
    """Download the items (or files) named by ``jobs``, ``workers`` at a
    time, as ia-fetch does; returns a ``Fetch``, which yields the events.

    ``jobs``: an iterable of dicts, as ia-fetch's input lines (``id``, and
    optionally ``file``, ``size``, ``destdir``; events and failed records
    are jobs too); it is read as the workers need more.  ``destdir``: where
    jobs without a destdir go (default: the current directory).
    ``options``: ia-fetch's long options with ``_`` for ``-``, e.g.
    ``glob=["*.pdf"]``, ``checksum=True``, ``halt="soon,fail=5"``,
    ``config_file="ia.ini"``; defaults and checks are ia-fetch's, and so is
    the configuration (IA_CONFIG_FILE, the proxy variables).  TypeError for
    an unknown option, ValueError for a bad value or configuration.

    A bad job is reported as ia-fetch reports a bad line: a ``failed``
    event when its id is usable, else a message on stderr; it is counted in
    ``bad_jobs`` either way.
    """
    settings = settings_from_keywords(workers=workers, destdir=destdir, **options)
    return Fetch(_numbered(jobs), settings)


def _numbered(jobs):
    """``(where, job)`` for each job, a copy: the run adds fields to it.
    The bad jobs are counted afresh for each fetch, and their number told
    at the end of its jobs, as ia-fetch tells it at the end of its input."""
    jsonl.start_bad_line_count()
    for number, job in enumerate(jobs, 1):
        yield f"job {number}", dict(job) if isinstance(job, dict) else job
    jsonl.report_bad_line_count()


class Fetch:
    """A running fetch: an iterator of event dicts (``started``,
    ``completed``, ``failed``, ``skipped``, ``planned``: see iatools(7)),
    and a context manager.

    The threads start at the first ``next()`` (or on entering the ``with``
    block) and the iteration ends when every job has ended.  ``stop()``
    ends the run early and cleanly, as ia-fetch on Ctrl-C: no new job
    starts, transfers are cut, nothing incomplete is left under a final
    name (partial files stay beside it, and a later run resumes them), and
    the jobs in flight end with ``failed`` events, ``retryable`` true; the
    iteration yields those and then ends.  Leaving the ``with`` block (or
    ``close()``) stops the run the same way and returns once its jobs have
    ended, a second or so after; a worker still waiting for response
    headers ends by itself at ``timeout`` seconds at the latest, and the
    jobs iterable is not read any further than its next job.
    """

    def __init__(self, records, settings, progress=None):
        """Prefer ``fetch()``.  ``records``: ``(where, record)`` pairs,
        ``where`` naming the record in messages; ``progress``: the display
        that counts bytes and jobs (ia-fetch's), else none is shown."""
        self._engine = _Engine(records, settings, progress or Progress(live=False,
                                                                        verbose=False))
        self._ended = False

    def __iter__(self):
        return self

    def __next__(self):
        if self._ended:
            raise StopIteration
        self._engine.start()
        event = self._engine.events.get()
        if event is None:
            self._ended = True
            self._engine.raise_input_error()
            raise StopIteration
        return event

    def __enter__(self):
        self._engine.start()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        # A Fetch dropped unfinished (a loop left without ``with``) must not
        # go on downloading behind the caller's back.
        engine = getattr(self, "_engine", None)
        if engine is not None and not self._ended:
            engine.stop()

    def start(self):
        """Start the threads now rather than at the first ``next()``."""
        self._engine.start()

    def stop(self):
        """End the run cleanly (see the class); from any thread or a signal
        handler, at any time, any number of times.  Keep iterating for the
        events of the jobs it cut short."""
        self._engine.stop()

    def close(self):
        """Stop the run and wait until its jobs have ended, as ia-fetch on
        Ctrl-C (about a second); events not yet read are dropped."""
        self._engine.stop()
        self._engine.join()
        self._ended = True

    @property
    def stopped(self):
        """Whether the run is stopping or stopped early: ``stop()``, or
        ``halt="now,..."`` reached."""
        return self._engine.stop_asked or self._engine.cancel.is_set()

    @property
    def failed(self):
        """The jobs failed so far (``is_failure``), bad jobs included."""
        return self._engine.failed

    @property
    def bad_jobs(self):
        """Jobs that were not usable jobs (each reported already)."""
        return self._engine.bad_jobs

    @property
    def halted(self):
        """Whether ``halt`` stopped the run."""
        return self._engine.halted

    @property
    def crashed(self):
        """Whether a worker died of an unexpected error (a bug)."""
        return self._engine.pool.crashed


class _Engine:
    """The threads of a fetch and what they share.  Apart from ``Fetch``,
    which only holds it, so that a Fetch nobody holds any more is
    collected, and stops its engine."""

    def __init__(self, records, settings, progress):
        self.records = records
        self.settings = settings
        self.progress = progress
        self.cancel = threading.Event()
        self.locks = ItemLocks(settings.lock_timeout)
        pacing = HostPacing(settings.workers, notify=_slowed)
        progress.slowdown = pacing.describe
        self.pool = Pool(settings, self._emit, self.cancel, pacing, progress, self.locks)
        self.events = queue.SimpleQueue()
        self.count_lock = threading.Lock()
        self.failed = self.finished = self.bad_jobs = 0
        self.halted = False
        self.stop_asked = False
        self.input_error = None
        self._pool_ended = threading.Event()
        self._threads = []
        self._start_lock = threading.Lock()

    def start(self):
        """Start the threads, once (under the lock: a ``join`` from another
        thread must not find them not yet started)."""
        with self._start_lock:
            if self._threads:
                return
            self._threads = [threading.Thread(target=self._supervise, name="supervisor",
                                              daemon=True),
                             threading.Thread(target=self._feed, name="feeder", daemon=True)]
            self.pool.start(self.settings.workers, on_finished=self._pool_ended.set)
            for thread in self._threads:
                thread.start()

    def stop(self):
        """Begin no more jobs, and cut the transfers in flight: asked here,
        done by the supervisor within _TICK.  Setting a flag takes no lock,
        so a signal handler may call this even while the thread it
        interrupted holds the locks that stopping takes."""
        self.stop_asked = True

    def join(self):
        """Wait for the jobs to end: for the supervisor, which gives up those
        still in flight ABANDON_AFTER a stop, and ends the finisher; then a
        little for the workers.  Not for a worker still waiting for response
        headers (it ends at --timeout), nor for the feeder, which may be
        waiting on the jobs iterable (it offers its next job to no one):
        daemons both, whose jobs have ended."""
        with self._start_lock:
            threads = list(self._threads)
        if threads:
            threads[0].join()
            self.pool.join(patience=ABANDON_AFTER)

    def raise_input_error(self):
        """The jobs iterable's own error, which ended the input, if any."""
        if self.input_error is not None:
            raise self.input_error

    # -- the feeder thread ------------------------------------------------------
    def _feed(self):
        try:
            for where, record in self.records:
                job = self._job(where, record)
                if job is None:
                    continue
                if not self.pool.offer(job):
                    return
                self.progress.read += 1
            self.progress.tally.total = self.progress.read
        except Exception as exc:  # the caller's iterable failed: said when the events end
            self.input_error = exc
        finally:
            self.pool.close_input()

    def _job(self, where, record):
        try:
            return job_of_record(where, record, self.settings.destdir, self._failed_input)
        except jsonl.BadLine as problem:
            jsonl.report_bad(where, problem)
            with self.count_lock:
                self.bad_jobs += 1
            return None

    def _failed_input(self, event):
        """A bad job that is a job all the same: it counts in the total."""
        self.progress.read += 1
        self._emit(event)

    # -- the supervisor thread ----------------------------------------------------
    def _supervise(self):
        try:
            while self.pool.alive():
                # Woken at once when the work is over, else four times a second.
                self._pool_ended.wait(_TICK)
                if self.stop_asked and not self.cancel.is_set():
                    self.pool.cancel_now()
                if self.pool.overdue(ABANDON_AFTER):
                    self.pool.abandon()
                    break
                self.locks.refresh()
        finally:
            self.pool.end_finisher()
            self.events.put(None)

    # -- events: counted where they are made ----------------------------------------
    def _emit(self, event):
        """Queue an event for the reader.  An outcome is counted here, in
        the thread that ends the job and before its worker takes another:
        once --halt now is reached, nothing more starts."""
        self.events.put(event)
        if event["event"] == "started":
            return
        halt = self.settings.halt
        with self.count_lock:
            self.finished += 1
            if not is_failure(event):
                return
            self.failed += 1
            if self.halted or not halt.reached(self.failed, self.finished):
                return
            self.halted = True
        errors.warning(f"--halt {halt} reached after {self.failed} failed jobs; stopping")
        if halt.when == "now":
            self.pool.cancel_now()
        else:
            self.pool.stop_taking_jobs()


def _slowed(message):
    """-v: say when and why the run slowed down."""
    errors.debug(f"slowing down: {message}")
