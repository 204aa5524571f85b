"""How ``ia-joblog skip`` judges jobs: against the completions of the log
(iatools.log.completions), a whole chunk of plain job lines at a time when it
can, each job passed on (as new, or as changed upstream since it completed)
with its queued event, or dropped (done, or failed for good)."""

import re
from collections import Counter
from itertools import compress

import orjson

from iatools.base.lazynumpy import np
from iatools.contract import jsonl
from iatools.contract.jobs import FAILURE_FIELDS, make_event
from iatools.contract.linegrammar import (SIZE, jobs_in_chunk, key_bytes, plain_chunk,
                                          plain_job_line, queued_events)
from iatools.log.completions import NO_SIZE, update_text

# A job line as iatools commands write it, one that the full parser would
# accept and give back unchanged: the key, then "size", "updated", "destdir"
# and plain user fields.  Such lines are judged a whole chunk at a time,
# which is several times faster than parsing each (measured: see
# ia-joblog(1), PERFORMANCE); any other line goes to the full parser.
# Groups: the key, "size" and "updated" (b"" when absent).
_JOB_LINE = plain_job_line(
    rb',"size":(' + SIZE + rb")", rb',"updated":"([ !#-\[\]-~]*)"', rb',"destdir":"[ !#-\[\]-~]+"',
    reserved=(b"id", b"file", b"size", b"updated", b"destdir", b"event")
    + tuple(f.encode() for f in FAILURE_FIELDS))
#: A chunk of nothing but such lines: one match for the chunk, no object per
#: line, where the keys are not needed (an empty log).
_JOB_LINES = re.compile(rb"(?:" + _JOB_LINE.pattern[1:-1] + rb"\n)*")
#: What skip does with a job: pass it on as new, or as changed upstream since
#: it completed; drop it as done, or as failed for good.
_NEW, _CHANGED, _DONE, _PERMANENT = range(4)


class SkipJudge:
    """Judges jobs against the completions of the log, and counts."""

    def __init__(self, state, retry_permanent, noting=False):
        self.state = state
        self.permanent = set() if retry_permanent else state.permanent
        self.tally = Counter()
        self.bad_lines = 0
        # Nothing completed and nothing failed for good: every job is new.
        self._fresh = not state.done and not self.permanent
        # (``noting``) The hashes of the keys of the jobs queued since
        # ``take_queued``, in order, and their sizes (NO_SIZE when none), an
        # int64 array of them a batch; None once a "changed" event was queued.
        self._queued = ([], []) if noting else None

    def take_queued(self):
        """The key hashes and sizes of the jobs queued since the last call,
        in the order of their events (lists of arrays); None when an event
        that reopens a key came among them, or when not ``noting``."""
        queued = self._queued
        if queued is not None:
            self._queued = ([], [])
        return queued

    def summary(self):
        """What was done with the jobs, for people."""
        tally = self.tally
        return (f"{tally[_DONE]} jobs already completed, {tally[_CHANGED]} changed "
                f"upstream since, {tally[_PERMANENT]} dropped as failed for good "
                f"(--retry-permanent retries them), {tally[_NEW] + tally[_CHANGED]} passed on")

    def dropped(self):
        """Jobs not passed on so far: done, or failed for good."""
        return self.tally[_DONE] + self.tally[_PERMANENT]

    def read_ahead(self, chunk):
        """A chunk of job lines ``(first line number, lines, data)`` with
        what ``judge_chunk`` needs of its lines when all are plain job
        lines (``_JOB_LINE``), else None: what can be done before the
        jobs before it are judged (iatools.base.forkedmap.computed_ahead
        does it in another process, a step ahead)."""
        first, lines, data = chunk
        if not lines:  # the last line, without its newline
            data, lines = data + b"\n", 1
        return first, lines, data, self._cut(lines, data)

    def _cut(self, lines, data):
        if not plain_chunk(data):
            return None
        if self._fresh and self._queued is None:
            return _JOB_LINES.fullmatch(data) is not None or None
        found = _JOB_LINE.findall(data)
        if len(found) != lines:
            return None
        keys, sizes, updated = zip(*found)
        state = self.state
        hashes, sizes = state.done.hash_array(keys), state.sizes(sizes)
        return (hashes, sizes) if self._fresh else (hashes, sizes, state.hash_updates(updated))

    def judge_chunk(self, first, lines, data, cut):
        """(queued events, jobs to pass on) for a chunk read ahead."""
        if cut is None:
            return self.lines(first, data)
        if self._fresh:
            if self._queued is not None:
                hashes, sizes = cut
                self._queued[0].append(hashes)
                self._queued[1].append(sizes)
            self.tally[_NEW] += lines
            return [queued_events(data)], [data]
        verdicts = self._verdicts(*cut)
        counts = np.bincount(verdicts, minlength=4).tolist()
        self.tally.update(dict(enumerate(counts)))
        if counts[_NEW] == lines:
            return [queued_events(data)], [data]
        if not counts[_NEW] and not counts[_CHANGED]:
            return [], []
        split = data.splitlines(keepends=True)
        new = b"".join(compress(split, (verdicts == _NEW).tolist()))
        if not counts[_CHANGED]:
            return ([queued_events(new)] if new else []), [new]
        changed = list(compress(split, (verdicts == _CHANGED).tolist()))
        queued = ([queued_events(new)] if new else []) + [
            _changed_event(orjson.loads(line)) for line in changed]
        return queued, [b"".join(compress(split, (verdicts <= _CHANGED).tolist()))]

    def _verdicts(self, hashes, sizes, updated):
        """_NEW, _CHANGED, _DONE or _PERMANENT for each job (a numpy array),
        given its key's hash and its version (size or NO_SIZE, hash of
        "updated").  One lookup says "done, same version" for most; only
        the others are looked up among the completed keys, and their
        versions compared."""
        state = self.state
        hashes = np.asarray(hashes, np.int64)
        unchanged = state.unchanged_each(hashes, sizes, updated)
        verdicts = unchanged.astype(np.int8) * _DONE  # _DONE, or _NEW (0)
        others = np.flatnonzero(~unchanged)
        if not len(others):
            return verdicts
        other_hashes = hashes[others]
        done_at = others[state.done.contains_array(other_hashes)].tolist()
        if done_at:
            changed = state.changed(hashes[done_at].tolist(),
                                    list(map(sizes.__getitem__, done_at)),
                                    list(map(updated.__getitem__, done_at)))
            verdicts[done_at] = [_CHANGED if is_changed else _DONE for is_changed in changed]
        if self.permanent:
            for i in compress(others.tolist(), map(self.permanent.__contains__,
                                                   other_hashes.tolist())):
                if verdicts[i] == _NEW:
                    verdicts[i] = _PERMANENT
        return verdicts

    def lines(self, first, data):
        """(queued events, jobs to pass on) for a chunk judged line by line,
        with the full parser."""
        queued, passing, bad_lines, new = [], [], [], []
        found = list(jobs_in_chunk(first, data, bad_lines.append))
        jobs = [job for _, _, job in found]
        hashes = self.state.done.hash_keys(list(map(key_bytes, jobs)))
        verdicts = self._verdicts(
            hashes, [job.get("size", NO_SIZE) for job in jobs],
            self.state.hash_updates([update_text(job.get("updated")) for job in jobs]),
        ).tolist() if jobs else []
        for (line, record, job), verdict, h in zip(found, verdicts, hashes):
            self.tally[verdict] += 1
            if verdict == _NEW:
                queued.append(jsonl.dumps(make_event("queued", job)))
                new.append((h, job.get("size", NO_SIZE)))
            elif verdict == _CHANGED:
                queued.append(_changed_event(job))
                self._queued = None
            else:
                continue
            # The raw line keeps the user's field order and formatting.
            passing.append(line + b"\n" if job is record else jsonl.dumps(job))
        self.bad_lines += len(bad_lines)
        if new and self._queued is not None:
            new_hashes, new_sizes = zip(*new)
            self._queued[0].append(np.array(new_hashes, np.int64))
            self._queued[1].append([size if isinstance(size, int) else NO_SIZE
                                    for size in new_sizes])
        return queued, passing


def _changed_event(job):
    return jsonl.dumps(make_event("queued", job, reason="changed"))
