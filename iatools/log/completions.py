"""The completed jobs of a log: what ``skip`` and ``completed`` read.

A key is completed when its latest outcome among completed, verified,
damaged and "changed upstream" is a completed or verified event
(iatools.contract.linegrammar.reopens).  For each completion it keeps where the event
is and the version of the item it recorded -- its ``size`` and the hash of
its ``updated`` -- so that skip can tell an item changed since, and
``completed`` print the jobs; and the keys whose latest outcome is a
permanent failure ("retryable": false), which skip drops.

Completions are found by the beginning of their lines and their job
fields by one regular expression, a whole chunk at a time; a chunk with a
line of another shape, or an event that reopens a key, is parsed line by
line.  A reading starts from the log's checkpoint, when it has one to
trust, and saves a new one when it has read enough past it.
"""

import re
from array import array
from itertools import compress, repeat

import orjson

from iatools.log import checkpoint
from iatools.log.eventlog import events_in, read_chunks
from iatools.base.keyset import KeyMap, KeySet
from iatools.contract.linegrammar import (DONE_EVENTS, FAILED_LINE, SIZE, all_lines_closed, key_bytes,
                                 line_starts, marked, may_reopen, mentions, outcome_with_fields,
                                 reopens)

#: A completion whose job fields are plain, up to its "ts": groups: the
#: key, its "size" and "updated" (b"" when absent).
_DONE_WITH_VERSION = outcome_with_fields(b"completed|verified", (b"size", b"(" + SIZE + b")"),
                                         (b"updated", rb'"([^"\\\n]*)"'))
#: "size" of a completion that recorded none.
NO_SIZE = -1


def _may_be_outcome(line):
    return (b"completed" in line or b"verified" in line or b"failed" in line
            or b"damaged" in line or b"changed" in line)


class Completions:
    """``done``: the hashes of the completed keys; ``latest``: for each
    completion, (offset of its line, size or NO_SIZE, hash of "updated");
    ``permanent``: the hashes of the keys whose latest outcome is a
    permanent failure."""

    def __init__(self, salt=None):
        self.done = KeySet(salt)
        self.latest = KeyMap(3)
        self.permanent = set()
        self.no_update = self.done.hash_key(b"")

    @classmethod
    def read(cls, path, report=True):
        """The completions of the log at ``path`` and the Position read up to."""
        epoch = checkpoint.current_epoch(path)
        loaded, state = checkpoint.load(path, "completed", cls._load)
        state = state or cls()
        position = loaded
        for first, lines, data in read_chunks(path, report, loaded):
            if not state._read_fast(lines, data, position.offset):
                state._read_slow(path, first, data, position.offset, report)
            position = position.after(data, lines)
        if checkpoint.worth_saving(loaded, position):
            state.latest.fold()
            size = state.done.dumped_size() + state.latest.dumped_size() + 8 * len(state.permanent)
            checkpoint.save(path, "completed", position, size, state._dump, epoch)
        return state, position

    def _read_fast(self, lines, data, base):
        text = marked(data)
        done = list(_DONE_WITH_VERSION.finditer(text))
        failures = FAILED_LINE.findall(text)
        if ((len(done), len(failures)) != mentions(data)
                or may_reopen(data) or not all_lines_closed(lines, data)):
            return False
        try:
            failures = [orjson.loads(line) for line in failures]
        except orjson.JSONDecodeError:
            return False
        for event in failures:
            self._failed(self.done.hash_key(key_bytes(event)), event)
        keys, sizes, updated = zip(*map(re.Match.groups, done, repeat(b""))) if done else ((),) * 3
        offsets = [base + m.start() for m in done]
        self._completed(self.done.hash_keys(keys), offsets,
                        [int(s) if s else NO_SIZE for s in sizes], self.done.hash_keys(updated))
        return True

    def _read_slow(self, path, first, data, base, report):
        starts = line_starts(data)
        for line_number, event in events_in(path, first, data, _may_be_outcome, report):
            h = self.done.hash_key(key_bytes(event))
            if event["event"] in DONE_EVENTS:
                size, updated = event.get("size"), event.get("updated")
                self._completed([h], [base + starts[line_number - first]],
                                [size if isinstance(size, int) else NO_SIZE],
                                [self.hash_update(updated)])
            elif event["event"] == "failed":
                self._failed(h, event)
            elif reopens(event):
                self.done.discard([h])
                self.permanent.discard(h)

    def hash_update(self, updated):
        """The hash of an "updated" value as a completion records it."""
        text = updated.encode("utf-8", "surrogatepass") if isinstance(updated, str) else b""
        return self.done.hash_key(text)

    def _completed(self, hashes, offsets, sizes, updated):
        self.done.add(hashes)
        self.latest.add(hashes, offsets, sizes, updated)
        self.permanent.difference_update(hashes)

    def _failed(self, h, event):
        if event.get("retryable") is False:
            self.permanent.add(h)
        else:
            self.permanent.discard(h)

    def changed(self, hashes, sizes, updated):
        """For completed keys and the version a job now gives each (its size
        or None, the hash_update of its "updated"): is the version
        different from the one the latest completion recorded?  Each of
        size and updated counts only when both sides have it (a key whose
        record cannot be found has none)."""
        no_update = self.no_update
        return [was is not None
                and ((size is not None and was[1] != NO_SIZE and size != was[1])
                     or (update != no_update and was[2] != no_update and update != was[2]))
                for was, size, update in zip(self.latest.latest(hashes), sizes, updated)]

    def completed_offsets(self):
        """The offsets of the latest completion of each completed key, in
        log order."""
        offsets = array("q")
        for hashes, bucket_offsets, _, _ in self.latest.latest_columns():
            offsets.extend(compress(bucket_offsets, self.done.contains_each(hashes)))
        return array("q", sorted(offsets))

    def _dump(self, writer):
        self.done.dump(writer)
        self.latest.dump(writer)
        writer.blob(orjson.dumps(sorted(self.permanent)))

    @classmethod
    def _load(cls, reader):
        done = KeySet.load(reader)
        state = cls(done.salt)
        state.done = done
        state.latest = KeyMap.load(reader, 3)
        state.permanent = set(orjson.loads(reader.blob()))
        return state
