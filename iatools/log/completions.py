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

Skip asks of most jobs only "completed, with this very version?": one
lookup in ``current``, the completed keys tagged with the version of their
latest completion.  The records of the completions themselves (32 bytes
each, two thirds of what a reading holds) are saved in a checkpoint of
their own and loaded only when needed: by ``completed``, for a job whose
version is not the one tagged, and to save the checkpoints again.
"""

import re
from itertools import repeat

import orjson

from iatools.base import errors
from iatools.base.keymap import KeyMap
from iatools.base.keyset import KeySet, TaggedKeys
from iatools.base.lazynumpy import np
from iatools.base.sortedarrays import among
from iatools.contract.linegrammar import (DONE_EVENTS, FAILED_LINE, SIZE, all_lines_closed,
                                          key_bytes, line_starts, marked, may_reopen, mentions,
                                          outcome_with_fields, queued_only, reopens,
                                          whole_numbers)
from iatools.log import checkpoint
from iatools.log.eventlog import events_in
from iatools.log.sharedread import read_cut

#: A completion whose job fields are plain, up to its "ts": groups: the
#: key, its "size" and "updated" (b"" when absent).
_DONE_WITH_VERSION = outcome_with_fields(b"completed|verified", (b"size", b"(" + SIZE + b")"),
                                         (b"updated", rb'"([^"\\\n]*)"'))
#: A reader that needs only the completed keys (pending, completed) folds
#: the completions of a tail shorter than this into them, and saves no
#: checkpoint: saving would load every completion's record to index them
#: again (32 bytes each: 150 MB and seconds for 5 million).
_REINDEX_AFTER = 64 << 20
#: "size" of a completion (or a job) that gives none.
NO_SIZE = -1
#: The columns of a completion's record: the offset of its line, its size
#: (or NO_SIZE) and the hash of its "updated"; the version is the last two.
_RECORD_WIDTH = 3
_VERSION = (1, 2)


def _restore_records(reader):
    return int.from_bytes(reader.read(8), "big"), KeyMap.load(reader, _RECORD_WIDTH)


def _may_be_outcome(line):
    return (b"completed" in line or b"verified" in line or b"failed" in line
            or b"damaged" in line or b"changed" in line)


class Completions:
    """``done``: the hashes of the completed keys; ``current``: each tagged
    with the version its latest completion recorded; ``permanent``: the
    hashes of the keys whose latest outcome is a permanent failure;
    ``reopened``: those whose latest outcome reopens them."""

    def __init__(self, salt=None):
        self.done = KeySet(salt)
        self.current = TaggedKeys()
        self.permanent = set()
        self.reopened = set()
        # The completed and verified events read, however many of a key.
        self.completion_lines = 0
        self.no_update = self.done.hash_key(b"")
        # The records of the completions read after the checkpoint.
        self._later = KeyMap(_RECORD_WIDTH)
        # Keys completed or reopened after the checkpoint: ``current`` may
        # hold an older version of them.
        self._touched = set()
        # Those of the checkpoint, once loaded; where they come from.
        self._records = None
        self._path, self._covered = None, checkpoint.START
        self._read_to = checkpoint.START

    @classmethod
    def read(cls, path, report=True, tagged=True):
        """The completions of the log at ``path`` and the Position read up to;
        (not ``tagged``) without ``current``, and without the records once
        saved (loaded again if asked), for a reader of ``done`` alone."""
        epoch = checkpoint.current_epoch(path)
        loaded, state = checkpoint.load(path, "completed", cls._load)
        if state is None:
            state = cls()
            state._records = KeyMap(_RECORD_WIDTH)
        state._path, state._covered = path, loaded
        position = state._read_to = state._read_from(loaded, report)
        fresh_with_records = state._records is not None and (state._records.added
                                                             or state._later.added)
        # Saving means indexing every record again: a reader of ``done``
        # alone leaves a tail of less than _REINDEX_AFTER to the writers'
        # refresh, which keeps the checkpoints (iatools.log.logindex).
        save = checkpoint.worth_saving(loaded, position) and (
            tagged or fresh_with_records or position.offset - loaded.offset >= _REINDEX_AFTER)
        if fresh_with_records or save:
            state._index()
        else:
            state._settle_later()
        if save:
            state._save(path, position, epoch)
            if not tagged:
                state._records, state._covered = None, position
        if not tagged:
            state.current = TaggedKeys()
        return state, position

    @classmethod
    def save_none(cls, path, position, epoch, salt):
        """Save the checkpoints of a log with no completion up to the
        Position ``position`` (a new log skip filled), its keys hashed with
        ``salt``, written in the stamp's ``epoch``."""
        state = cls(salt)
        state._records = KeyMap(_RECORD_WIDTH)
        state._save(path, position, epoch)

    def _save(self, path, position, epoch):
        # The keys first, their records only if the keys were saved: the
        # records' checkpoint is then never ahead of the keys' in an epoch
        # (checkpoints are never set back), only behind when another
        # reading saved in between, and a reading of the records catches
        # up from there (_load_records).
        size = 2 * self.done.dumped_size() + 8 * len(self.permanent | self.reopened)
        if checkpoint.save(path, "completed", position, size, self._dump, epoch):
            checkpoint.save(path, "completions", position, 8 + self._records.dumped_size(),
                            self._dump_records, epoch)

    def _read_from(self, start, report, until=None):
        """Read the log from the Position ``start`` (to its end, or to past
        the offset ``until``); the Position reached."""
        return read_cut(self._path, start, self._cut, self._fold_cut,
                        lambda first, data, base: self._read_slow(first, data, base, report),
                        until=until, report=report)

    def _cut(self, lines, data, base):
        """What a chunk whose lines all have the writers' shape tells: the
        failures (key hash, for good?) and the completions (key hashes,
        offsets, sizes, hashes of "updated"), or None; None for any other
        chunk.  ``base``: the chunk's offset in the log."""
        if queued_only(lines, data) and not may_reopen(data):
            # Queued events only (skip writes them by the million): none
            # completes or fails a key.
            return ([], None) if all_lines_closed(lines, data) else None
        text = marked(data)
        done = list(_DONE_WITH_VERSION.finditer(text))
        failures = FAILED_LINE.findall(text)
        if ((len(done), len(failures)) != mentions(data)
                or may_reopen(data) or not all_lines_closed(lines, data)):
            return None
        try:
            failures = [orjson.loads(line) for line in failures]
        except orjson.JSONDecodeError:
            return None
        failed = list(zip(self.done.hash_keys(list(map(key_bytes, failures))),
                          [event.get("retryable") is False for event in failures]))
        if not done:
            return failed, None
        keys, sizes, updated = zip(*map(re.Match.groups, done, repeat(b"")))
        return failed, (self.done.hash_keys(keys), [base + m.start() for m in done],
                        self.sizes(sizes), self.hash_updates(updated))

    def _fold_cut(self, cut):
        """Fold what ``_cut`` found in a chunk, in order."""
        failed, completions = cut
        for h, for_good in failed:
            self._failed(h, for_good)
        if completions is not None:
            self._completed(*completions)

    def _read_slow(self, first, data, base, report):
        starts = line_starts(data)
        numbered = list(events_in(self._path, first, data, _may_be_outcome, report))
        events = [event for _, event in numbered]
        hashes = self.done.hash_keys(list(map(key_bytes, events)))
        updates = self.hash_updates([update_text(event.get("updated")) for event in events])
        for (line_number, event), h, update in zip(numbered, hashes, updates):
            if event["event"] in DONE_EVENTS:
                size = event.get("size")
                self._completed([h], [base + starts[line_number - first]],
                                [size if isinstance(size, int) else NO_SIZE], [update])
            elif event["event"] == "failed":
                self._failed(h, event.get("retryable") is False)
            elif reopens(event):
                self.reopened.add(h)
                self._touched.add(h)
                self.permanent.discard(h)

    @staticmethod
    def sizes(sizes):
        """The "size" fields a regular expression took out of lines (b""
        when absent) as an int64 array of numbers (NO_SIZE)."""
        if b"" not in sizes:
            return whole_numbers(sizes)
        return np.array([int(s) if s else NO_SIZE for s in sizes], np.int64)

    def hash_updates(self, updated):
        """The hash of each of the "updated" values a completion records,
        as text (``update_text``; a regular expression takes it out of the
        lines, b"" when absent): each distinct one hashed once (most are
        alike, or absent)."""
        if updated and updated.count(updated[0]) == len(updated):
            return self.done.hash_keys(updated[:1]) * len(updated)
        distinct = list(set(updated))
        hashes = dict(zip(distinct, self.done.hash_keys(distinct)))
        return list(map(hashes.__getitem__, updated))

    def _completed(self, hashes, offsets, sizes, updated):
        self.completion_lines += len(hashes)
        self._later.add(hashes, offsets, sizes, updated)
        if self.permanent:
            self.permanent.difference_update(hashes)
        if self.reopened:
            self.reopened.difference_update(hashes)

    def _failed(self, h, for_good):
        if for_good:
            self.permanent.add(h)
        else:
            self.permanent.discard(h)

    def _settle_later(self):
        """Bring ``done`` up to date with the completions and reopenings read
        after the checkpoint (few: more are folded into the records by
        ``_index``)."""
        completed = self._later.hashes().tolist()
        self._touched.update(completed)
        if completed:  # (else ``done`` may stay in its checkpoint)
            self.done.add([h for h in completed if h not in self.reopened])
        self.done.discard(self._touched & self.reopened)

    def _index(self):
        """``done`` and ``current`` built afresh from all the records."""
        records = self.records()
        records.compact()
        self.done, self.current = records.keys_and_tags(self.done.salt, _VERSION, self.reopened)
        self._touched = set()

    def records(self):
        """The KeyMap of every completion read: (offset, size, hash of
        "updated") by key hash, loaded from the checkpoint at first use."""
        if self._records is None:
            self._records = self._load_records()
        if self._later.added:
            if self._records.added:
                self._records.update(self._later)
            else:  # (a first reading: no copy of them all)
                self._records = self._later
            self._later = KeyMap(_RECORD_WIDTH)
        return self._records

    def _dump_records(self, writer):
        # The salt of their hashes: two readers saving at once may leave
        # the records of one beside the completed keys of the other.
        writer.write(self.done.salt.to_bytes(8, "big"))
        self._records.dump(writer)

    def _load_records(self):
        """The records of the completions up to where the completed keys
        were loaded from: their checkpoint's, and those of the lines after
        it (two readings that saved at once can leave it behind)."""
        loaded, saved = checkpoint.load(self._path, "completions", _restore_records)
        salt, records = saved or (None, None)
        if records is None or salt != self.done.salt or loaded.offset > self._covered.offset:
            loaded, records = checkpoint.START, KeyMap(_RECORD_WIDTH)
        if loaded == self._covered:
            return records
        errors.debug(f"{self._path}: the completions of its checkpoint are read again "
                     f"from line {loaded.line}")
        again = Completions(self.done.salt)
        again._path, again._records = self._path, records
        again._read_from(loaded, False, until=self._covered.offset)
        return again.records()

    def unchanged_each(self, hashes, sizes, updated):
        """For key hashes and the version a job now gives each (its size or
        NO_SIZE, the hash_update of its "updated"): a numpy array of
        booleans, true where the key is completed and its latest
        completion recorded that very version.  (False: not completed, or
        ``changed`` decides.)"""
        found = self.current.has_each(hashes, sizes, updated)
        if self._touched:
            touched = self._touched
            found[[n for n, h in enumerate(hashes) if h in touched]] = False
        return found

    def changed(self, hashes, sizes, updated):
        """For completed keys and the version a job now gives each (as for
        ``unchanged_each``): is the version different from the one the
        latest completion recorded?  Each of size and updated counts only
        when both sides have it (a key whose record cannot be found has
        none)."""
        no_update = self.no_update
        return [was is not None
                and ((size != NO_SIZE and was[1] != NO_SIZE and size != was[1])
                     or (update != no_update and was[2] != no_update and update != was[2]))
                for was, size, update in zip(self.records().latest(hashes), sizes, updated)]

    def completed_offsets(self):
        """The offsets of the latest completion of each completed key, in
        log order: an int64 numpy array (or an empty list).  Only the keys
        and offsets of the records are loaded (16 of their 32 bytes), and
        let go on the way (the state then loads the records again if
        asked)."""
        records = self._records if self._records is not None else self._load_records()
        self._records, later = None, self._later
        if not (records.added or later.added):
            return []
        reopened = np.sort(np.fromiter(self.reopened, np.int64, len(self.reopened)))
        hashes, offsets = records.hashes_and_column(0)
        del records
        # Not those completed again since the checkpoint (the later records
        # hold their latest completion), nor those reopened.
        stale = among(hashes, reopened)
        if later.added:
            stale |= among(hashes, later.hashes())
        del hashes
        offsets = [offsets[~stale]]
        if later.added:
            offsets.append(later.column(0)[~among(later.hashes(), reopened)])
        offsets = np.concatenate(offsets)
        offsets.sort()
        return offsets

    def _dump(self, writer):
        self.done.dump(writer)
        self.current.dump(writer)
        writer.blob(orjson.dumps([sorted(self.permanent), sorted(self.reopened),
                                  self.completion_lines]))

    @classmethod
    def _load(cls, reader):
        done = KeySet.load(reader)
        state = cls(done.salt)
        state.done = done
        state.current = TaggedKeys.load(reader)
        permanent, reopened, state.completion_lines = orjson.loads(reader.blob())
        state.permanent, state.reopened = set(permanent), set(reopened)
        return state


def update_text(updated):
    """The text of a parsed "updated" value as a completion records it:
    b"" for none, or for one that is not a string."""
    return updated.encode("utf-8", "surrogatepass") if isinstance(updated, str) else b""
