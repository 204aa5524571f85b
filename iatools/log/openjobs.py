"""The jobs of a log that have not completed, and where each first appears.

``ia-joblog pending`` prints, for every key not completed, its first event
as a job -- for a key reopened (damaged, changed upstream), the latest event
that reopened it -- in log order.  A reading notes that line's
offset and the key's hash (16 bytes a key) instead of the line, and reads
the lines back at the end.  The notes are kept in a checkpoint
(iatools.log.checkpoint), so that the next reading scans only what was
appended since.  The notes hold only keys open where they end: a reading
drops those completed in what it scanned.
"""

import re
from array import array
from functools import partial
from itertools import compress, repeat
from operator import add, not_

from iatools.base.keyset import KeySet
from iatools.contract.linegrammar import (DONE_EVENTS, DONE_LINE, OPEN_LINE, all_lines_closed,
                                          key_bytes, line_starts, marked, may_reopen, reopens)
from iatools.log import checkpoint
from iatools.log.eventlog import events_in, lines_at, read_chunks

#: Keys judged against the completed ones at a time, when lines are read back.
_BATCH = 1 << 16


class OpenJobs:
    """Keys not completed when seen (hashed with the salt of the completed
    keys), and the offset of the first line of each, in log order."""

    def __init__(self, salt):
        self.noted = KeySet(salt)
        self.hashes = array("q")
        self.offsets = array("q")

    @classmethod
    def read(cls, path, done, done_end):
        """The open jobs of the log at ``path``, whose completed keys
        ``done`` were read up to the Position ``done_end``: from its
        checkpoint, if there is one to trust, on, and no further than
        ``done_end``.  (The log may have grown since: a key completed past
        ``done_end`` would stay noted as open, in the checkpoint too, and
        be printed by every reading after.)"""
        epoch = checkpoint.current_epoch(path)
        loaded, jobs = checkpoint.load(path, "pending", partial(cls._load, salt=done.salt))
        jobs = jobs or cls(done.salt)
        # The completions that noted keys may have had since they were
        # noted: those after the checkpoint.
        completed_since = KeySet(done.salt)
        reopened = {}
        position = loaded
        since = bool(loaded.offset)
        for first, lines, data in read_chunks(path, start=loaded, end=done_end.offset):
            hashes, offsets, completed, reopening = jobs._lines(path, first, lines, data, done,
                                                                since)
            jobs._note(hashes, list(map(add, offsets, repeat(position.offset))))
            completed_since.add(completed)
            reopened.update((h, position.offset + offset) for h, offset in reopening)
            position = position.after(data, lines)
        jobs._drop(completed_since)
        jobs._renote({h: offset for h, offset in reopened.items() if h not in done})
        if checkpoint.worth_saving(loaded, position):
            size = jobs.noted.dumped_size() + 16 * len(jobs.hashes)
            checkpoint.save(path, "pending", position, size, jobs._dump, epoch)
        return jobs

    def _lines(self, path, first, count, data, done, with_completed):
        """The hashes and offsets in ``data`` of the lines of keys not in
        ``done``, (``with_completed``) the hashes of the completed keys,
        and the (hash, offset) of the lines that reopen a key: found by the
        beginning of the lines, or parsed when a line has another shape or
        may reopen a key."""
        text = marked(data)
        matches = list(OPEN_LINE.finditer(text))
        completed = DONE_LINE.findall(text)
        if (len(matches) + len(completed) == count and all_lines_closed(count, data)
                and not may_reopen(data)):
            hashes = done.hash_keys(list(map(re.Match.group, matches, repeat(2))))
            offsets = list(map(re.Match.start, matches))
            reopening = []
        else:
            hashes, offsets, completed, reopening = [], [], [], []
            for offset, event in _events_at(path, first, data):
                if event["event"] in DONE_EVENTS:
                    completed.append(key_bytes(event))
                else:
                    hashes.append(done.hash_key(key_bytes(event)))
                    offsets.append(offset)
                    if reopens(event):
                        reopening.append((hashes[-1], offset))
        open_ = list(map(not_, done.contains_each(hashes)))
        # A key completed here and reopened later (damaged, changed) stays open.
        completed = done.hash_keys(completed) if with_completed else []
        completed = list(compress(completed, done.contains_each(completed)))
        return (list(compress(hashes, open_)), list(compress(offsets, open_)), completed,
                reopening)

    def _note(self, hashes, offsets):
        """Note the first line of each key not noted before."""
        first_offset = dict(zip(reversed(hashes), reversed(offsets)))
        fresh = self.noted.add_new(hashes)
        self.hashes.extend(fresh)
        self.offsets.extend(map(first_offset.__getitem__, fresh))

    def _drop(self, completed):
        """Forget the noted keys in the KeySet ``completed``.  Few
        completions (a tail since the checkpoint) are looked up among the
        noted keys, and the noted keys then checked against the few found,
        in a set: a lookup in a KeySet costs about 1 µs, in a small set 0.05
        (measured: 3 s against 0.2 s for 3 million open keys and 20,000
        completions)."""
        if not completed:
            return
        if completed.added <= len(self.hashes) // 4:
            candidates = completed.hashes().tolist()
            found = set(compress(candidates, self.noted.contains_each(candidates)))
            if not found:
                return
            keep = list(map(not_, map(found.__contains__, self.hashes)))
            # Forgotten, so that a line that reopens one later is noted afresh.
            self.noted.discard(found)
        else:
            keep = [not_(c) for start in range(0, len(self.hashes), _BATCH)
                    for c in completed.contains_each(self.hashes[start:start + _BATCH].tolist())]
            self.noted.compact(without=completed)
        self.hashes = array("q", compress(self.hashes, keep))
        self.offsets = array("q", compress(self.offsets, keep))

    def _renote(self, reopened):
        """Note, for each key reopened (hash -> offset of the latest line
        that reopened it: damaged, changed upstream), that line instead of
        its first: the job as it is to be done again."""
        if not reopened:
            return
        offsets = [reopened.get(h, offset) for h, offset in zip(self.hashes, self.offsets)]
        order = sorted(range(len(offsets)), key=offsets.__getitem__)
        self.hashes = array("q", map(self.hashes.__getitem__, order))
        self.offsets = array("q", map(offsets.__getitem__, order))

    def first_lines(self, path):
        """Batches of the first lines (bytes, no line ending) of the noted
        keys, in log order."""
        for start in range(0, len(self.offsets), _BATCH):
            yield lines_at(path, self.offsets[start:start + _BATCH])

    def _dump(self, writer):
        self.noted.dump(writer)
        writer.blob(self.hashes.tobytes())
        writer.blob(self.offsets.tobytes())

    @classmethod
    def _load(cls, reader, salt):
        noted = KeySet.load(reader)
        if noted.salt != salt:
            raise ValueError("the completed keys were read afresh since")
        jobs = cls(salt)
        jobs.noted = noted
        jobs.hashes = array("q", reader.blob())
        jobs.offsets = array("q", reader.blob())
        if len(jobs.hashes) != len(jobs.offsets):
            raise ValueError("damaged")
        return jobs


def _events_at(path, first, data, report=True):
    """(offset in ``data``, event) of each event of a chunk, parsed."""
    starts = line_starts(data)
    for line_number, event in events_in(path, first, data, report=report):
        yield starts[line_number - first], event
