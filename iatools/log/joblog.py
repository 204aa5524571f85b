"""An event log as a Python object: what ``ia-joblog`` does, for programs.

``JobLog(path)`` records events, skips the jobs already done, and reads the
log back -- the same log, checkpoints and answers as the command, since the
command's reading subcommands are thin shells over this class.  Jobs and
events are plain dicts, as they are JSON objects on a command's lines.
"""

import os
from collections.abc import Mapping
from itertools import chain, islice

import orjson

from iatools.base.forkedmap import ordered_map
from iatools.contract import jsonl
from iatools.contract.jobs import FAILURE_FIELDS, job_from_record, validate_job
from iatools.contract.linegrammar import (COMPLETION_AMONG_EVENTS, COMPLETION_EVENT, QUEUED_EVENT,
                                          jobs_among, jobs_in)
from iatools.log import logreport
from iatools.log.completions import Completions
from iatools.log.eventlog import LogWriter, lines_at, lines_in, regions_at, texts_at
from iatools.log.logindex import IndexKeeper
from iatools.log.openjobs import OpenJobs
from iatools.log.skipjudge import SkipJudge

#: Lines read back from the log at a time.
_BATCH = 1 << 16
#: Events that ``append`` records at a time.
APPEND_BATCH = 4096
#: Jobs that ``skip`` judges at a time: the first is passed on once this
#: many came in, or the input ended.
SKIP_BATCH = 256


class JobLog:
    """The event log at ``path`` (created by the first event recorded)."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def append(self, events):
        """Record ``events`` (dicts, each with an "event" and a valid job);
        return how many were recorded.  A bad event raises ValueError, and
        those before it are recorded.  (Written APPEND_BATCH at a time: one
        lock and write for each event, as ``tee`` must, costs eight times
        as much.)"""
        recorded = 0
        events = _dicts(events, "events")
        with _Recorder(self.path) as recorder:
            while batch := list(islice(events, APPEND_BATCH)):
                lines = []
                try:
                    for event in batch:
                        _check_event(event)
                        lines.append(jsonl.dumps(event))
                finally:
                    recorder.write(lines)
                recorded += len(lines)
        return recorded

    def tee(self, events):
        """Yield each of ``events`` once it is recorded."""
        events = _dicts(events, "events")
        with _Recorder(self.path) as recorder:
            for event in events:
                _check_event(event)
                recorder.write([jsonl.dumps(event)])
                yield event

    def skip(self, jobs, *, retry_permanent=False):
        """Yield the ``jobs`` not completed in the log, or changed upstream
        since they completed, each recorded as queued first; drop those
        done, and those failed for good unless ``retry_permanent``."""
        state, _ = Completions.read(self.path, report=False)
        judge = SkipJudge(state, retry_permanent)
        jobs = _dicts(jobs, "jobs")
        with _Recorder(self.path, while_writing=False) as recorder:
            while batch := list(islice(jobs, SKIP_BATCH)):
                for job in batch:
                    validate_job(job)
                data = b"".join(map(jsonl.dumps, batch))
                queued, passing = judge.judge_chunk(*judge.read_ahead((1, len(batch), data)))
                recorder.write(queued)
                for lines in passing:
                    yield from map(orjson.loads, lines.splitlines())

    def pending(self):
        """The jobs recorded and not completed, each once, in log order."""
        return _jobs_in(self.pending_lines())

    def pending_lines(self):
        """``pending``, as batches of JSONL job lines (bytes)."""
        state, done_end = Completions.read(self.path, report=False, tagged=False)
        offsets = OpenJobs.read(self.path, state.done, done_end).offsets
        del state  # the completed keys (60 MB for 7 million): printing needs none
        yield from _jobs_at(self.path, offsets, QUEUED_EVENT)

    def completed(self):
        """The jobs completed (or verified) now, each with the version its
        latest completion recorded, in log order."""
        return _jobs_in(self.completed_lines())

    def completed_lines(self):
        """``completed``, as batches of JSONL job lines (bytes)."""
        state, _ = Completions.read(self.path, report=False, tagged=False)
        offsets = state.completed_offsets()
        # Where every completion read is the latest of its key, the lines
        # of a block need not be cut out first: 0.28 us a line less.
        among = COMPLETION_AMONG_EVENTS if state.completion_lines == len(offsets) else None
        del state
        yield from _jobs_at(self.path, offsets, COMPLETION_EVENT, among)

    def failed(self, *, retryable=None):
        """The jobs whose latest outcome is a failure, each with its
        "error", "retryable" and the other failure fields; only those worth
        trying again (``retryable=True``) or only the others (False)."""
        failures = logreport.read(self.path).failures(retryable=retryable)
        for start in range(0, len(failures), _BATCH):
            for line in lines_at(self.path, [f.offset for f in failures[start:start + _BATCH]]):
                event = orjson.loads(line)
                job = job_from_record(event)
                job.update((field, event[field]) for field in FAILURE_FIELDS if field in event)
                yield job

    def status(self, *, by=None):
        """The summary ``ia-joblog status --json`` prints, as a dict."""
        return logreport.summarise(self.path, by)


def _jobs_at(path, offsets, shape, among=None):
    """The jobs of the event lines of ``shape`` at the increasing
    ``offsets`` (an array), in batches of JSONL lines: cut out on two cores
    where that pays (iatools.base.forkedmap); found where they are by the
    shape ``among`` (``jobs_among``) if given, where the log holds no other
    line of that shape (another completion of the key)."""
    def batch_at(start):
        batch = offsets[start:start + _BATCH].tolist()
        jobs = (_jobs_found_among(path, batch, shape, among) if among is not None
                else (jobs_in(text, count, shape) for text, count in texts_at(path, batch)))
        return b"".join(chain.from_iterable(jobs))
    return ordered_map(batch_at, range(0, len(offsets), _BATCH))


def _jobs_found_among(path, offsets, shape, among):
    for region, starts in regions_at(path, offsets):
        yield (jobs_among(region, len(starts), among)
               or jobs_in(lines_in(region, starts), len(starts), shape))


def _jobs_in(batches):
    for lines in batches:
        yield from map(orjson.loads, lines.splitlines())


def _dicts(items, what):
    """The ``items`` a method was given, checked to be dicts: a single dict
    or a string (a common slip) is refused at once, before any is
    recorded, rather than read key by key or character by character."""
    if isinstance(items, (str, bytes, Mapping)):
        raise TypeError(f"{what} must be an iterable of dicts, not a {type(items).__name__}")
    for item in items:
        if not isinstance(item, dict):
            raise TypeError(f"{what} must be dicts, not a {type(item).__name__}")
        yield item


def _check_event(event):
    validate_job(event)
    if "event" not in event:
        raise jsonl.BadLine('not an event (no "event" field)')
    if not isinstance(event["event"], str):
        raise jsonl.BadLine(f'"event" must be a string, not {event["event"]!r}')


class _Recorder:
    """Appends lines to a log and keeps its index (iatools.log.logindex)."""

    def __init__(self, path, while_writing=True):
        self.log = LogWriter(path)
        self.index = IndexKeeper(path, while_writing)

    def write(self, lines):
        self.log.append(lines)
        self.index.wrote(sum(map(len, lines)))

    def __enter__(self):
        return self

    def __exit__(self, kind, *_):
        self.log.close()
        if kind is None:
            self.index.leave()
