"""The jobs of a log that have not completed, and where each first appears.

``ia-joblog pending`` prints, for every key not completed, its first event
as a job -- for a key reopened (damaged, changed upstream), the latest event
that reopened it -- in log order.  A reading notes that line's
offset and the key's hash (16 bytes a key) instead of the line, and reads
the lines back at the end.  The notes are kept in a checkpoint
(iatools.log.checkpoint), so that the next reading scans only what was
appended since.  The notes hold only keys open where they end: a reading
drops those completed in what it scanned.

Beside the notes, the checkpoint keeps the set of the keys noted, sorted,
for the next reading to look up the keys it finds: read a batch at a time,
never held (40 MB for five million).  A reading from a checkpoint saves a
new one only past a long tail, or as the writers' refresh
(iatools.log.logindex): the set would have to be sorted again.
"""

from array import array
from functools import partial
from itertools import compress
from operator import not_

from iatools.base.keyset import KeySet
from iatools.base.lazynumpy import np
from iatools.contract.linegrammar import (DONE_EVENTS, EVENT_LINE, EVENT_START, all_lines_closed,
                                          key_bytes, line_starts, marked, may_reopen, reopens)
from iatools.log import checkpoint
from iatools.log.eventlog import events_in
from iatools.log.sharedread import read_cut

#: Open lines noted at a time (``OpenJobs._note``).
_NOTE_AFTER = 1 << 20
#: A reading (not a refresh) saves the checkpoint again only once it has
#: read this much past it.
_SAVE_TAIL_OVER = 64 << 20
#: Noted keys judged at a time when the completed ones are dropped.
_DROP_BATCH = 1 << 20
#: The kinds of event that complete a key, as a line spells them.
_DONE_KINDS = frozenset(kind.encode() for kind in DONE_EVENTS)


class OpenJobs:
    """Keys not completed when seen (hashed with the salt of the completed
    keys), and the offset of the first line of each, in log order."""

    def __init__(self, salt, noted_before=None):
        self.salt = salt
        self.hashes = array("q")
        self.offsets = array("q")
        # The set of the keys noted by the readings before (left in their
        # checkpoint), and of those this one noted.
        self._noted_before = noted_before or KeySet(salt)
        self._noted_now = KeySet(salt)
        # Open lines found, not yet noted (``_note``): arrays of hashes and
        # offsets, how many.
        self._waiting, self._waiting_count = [], 0

    @classmethod
    def read(cls, path, done, done_end, refresh=False):
        """The open jobs of the log at ``path``, whose completed keys
        ``done`` were read up to the Position ``done_end``: from its
        checkpoint, if there is one to trust, on, and no further than
        ``done_end``.  (The log may have grown since: a key completed past
        ``done_end`` would stay noted as open, in the checkpoint too, and
        be printed by every reading after.)  ``refresh``: saved again
        whenever worth it."""
        epoch = checkpoint.current_epoch(path)
        loaded, jobs = checkpoint.load(path, "pending", partial(cls._load, salt=done.salt))
        jobs = jobs or cls(done.salt)
        # The completions that noted keys may have had since they were
        # noted: those after the checkpoint.
        completed_since = KeySet(done.salt)
        reopened = {}
        since = bool(loaded.offset)

        def fold(found):
            hashes, offsets, completed, reopening = found
            jobs._note(hashes, offsets)
            completed_since.add(completed)
            reopened.update(reopening)

        def read_slow(first, data, base):
            fold(_slow_lines(path, first, data, base, done, since))

        # (Up to ``done_end`` or an error: keys noted by completions the log
        # no longer holds, once saved, would hide those jobs from every
        # reading after.)
        position = read_cut(path, loaded, partial(_fast_lines, done=done, with_completed=since),
                            fold, read_slow, end=done_end.offset, before_fork=done.load_saved)
        jobs._settle()
        jobs._drop(completed_since)
        jobs._renote({h: offset for h, offset in reopened.items() if h not in done})
        if checkpoint.worth_saving(loaded, position) and (
                refresh or not loaded.offset or position.offset - loaded.offset >= _SAVE_TAIL_OVER):
            jobs._save(path, position, epoch)
        return jobs

    def _note(self, hashes, offsets):
        """Note the first line of each key not noted before: the int64
        arrays of the hashes and offsets of open lines, in log order.  Noted
        a million or so at a time (``_settle``): a lookup among the keys
        noted after each chunk would sort and merge them each time."""
        self._waiting.append((hashes, offsets))
        self._waiting_count += len(hashes)
        if self._waiting_count >= _NOTE_AFTER:
            self._settle()

    def _settle(self):
        """Note the keys waiting: the first line of each, if not noted."""
        if not self._waiting:
            return
        hashes = np.concatenate([h for h, _ in self._waiting])
        offsets = np.concatenate([o for _, o in self._waiting])
        self._waiting, self._waiting_count = [], 0
        distinct, first = np.unique(hashes, return_index=True)
        first = np.sort(first[~self._noted(distinct)])
        self._noted_now.add(hashes[first])
        self.hashes.frombytes(hashes[first].tobytes())
        self.offsets.frombytes(offsets[first].tobytes())

    def _noted(self, ordered):
        """Is each of a sorted array of hashes noted?"""
        return (self._noted_before.contains_unloaded(ordered)
                | self._noted_now.contains_array(ordered, ordered=True))

    def _drop(self, completed):
        """Forget the noted keys in the KeySet ``completed`` (once the
        reading is done: the sets of the keys noted keep them), in numpy, a
        batch at a time, in place.  Few completions (a tail since the
        checkpoint) are looked up among the noted keys, and the noted lines
        then found among those found: by a table of their top bits
        (``_not_among``) when they are few enough to leave most of it
        empty, else as a set.  More are looked up by the noted lines.  (A
        list of booleans for ``compress`` took 4.9 s for 10 million noted
        keys and 2.3 million completions; this, 0.9.  The table, 2.3
        million found, 4.3 s: a table nine tenths full rules nothing out.)"""
        open_ = completed and self._still_open(completed)
        if not open_:
            return
        kept = _keep_in_place(self.hashes, self.offsets, open_)
        del self.hashes[kept:]
        del self.offsets[kept:]

    def _still_open(self, completed):
        """For ``_drop``: is each of an int64 array of noted hashes not
        completed?  None when none of those noted is."""
        if completed.added > len(self.hashes) // 4:
            return partial(_not_in, completed)
        candidates = completed.hashes()
        found = candidates[self._noted(candidates)]
        if not len(found):
            return None
        if len(found) <= _TABLED:
            return partial(_not_among, found, _top_bits_of(found))
        among = KeySet(self.salt)
        among.adopt(found)
        return partial(_not_in, among)

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

    @classmethod
    def save_all_open(cls, path, position, epoch, salt, hashes, offsets, noted):
        """Save the checkpoint of a log up to the Position ``position`` whose
        every line is the first of an open key (a new log skip filled):
        their hashes (with ``salt``) and offsets, int64 arrays in log
        order, and ``noted``, the hashes sorted; written in the stamp's
        ``epoch``."""
        jobs = cls(salt)
        jobs.hashes, jobs.offsets = hashes, offsets
        jobs._save(path, position, epoch, noted)

    def _save(self, path, position, epoch, ordered=None):
        """Save the notes at ``position``; ``ordered``: the hashes sorted,
        if at hand."""
        noted = KeySet(self.salt)
        noted.adopt(np.sort(np.frombuffer(self.hashes, np.int64)) if ordered is None else ordered)
        checkpoint.save(path, "pending", position, noted.dumped_size() + 16 * len(self.hashes),
                        partial(self._dump, noted), epoch)

    def _dump(self, noted, writer):
        noted.dump(writer)
        writer.blob(memoryview(self.hashes).cast("B"))
        writer.blob(memoryview(self.offsets).cast("B"))

    @classmethod
    def _load(cls, reader, salt):
        noted = KeySet.load(reader)
        if noted.salt != salt:
            raise ValueError("the completed keys were read afresh since")
        jobs = cls(salt, noted)
        reader.blob_into(jobs.hashes)
        reader.blob_into(jobs.offsets)
        if len(jobs.hashes) != len(jobs.offsets):
            raise ValueError("damaged")
        return jobs


#: The top bits of a hash that ``_not_among`` tables.
_TOP_BITS = 20
#: ``_not_among`` for at most this many hashes: a sixteenth of its table.
_TABLED = 1 << (_TOP_BITS - 4)


def _top_bits_of(hashes):
    """A table of the top bits of some hashes (an int64 array): true at
    each that one of them has."""
    table = np.zeros(1 << _TOP_BITS, bool)
    table[_top_bits(hashes)] = True
    return table


def _top_bits(hashes):
    return (hashes >> (64 - _TOP_BITS)) + (1 << (_TOP_BITS - 1))  # (signed: from 0)


def _not_among(few, table, hashes):
    """Is each of an int64 array of hashes not among the sorted array
    ``few`` (a few thousand), whose top bits ``table`` holds?  One lookup
    in the table (a megabyte) rules most out; the others are searched.
    (5 million noted keys against 25,000 completions: 0.46 s by binary
    search alone.)"""
    maybe = np.flatnonzero(table[_top_bits(hashes)])
    asked = hashes[maybe]
    not_among = np.ones(len(hashes), bool)
    not_among[maybe] = few.take(np.searchsorted(few, asked), mode="clip") != asked
    return not_among


def _not_in(keys, hashes):
    return ~keys.contains_array(hashes)


def _keep_in_place(hashes, offsets, open_):
    """Move the hashes (array("q")) for which ``open_`` (of an int64 array)
    is true, and their offsets, to the front, in order, a batch at a time;
    how many.  (Its numpy views of the arrays go with it: an array can be
    cut short only when none is left.)"""
    hashes, offsets = np.frombuffer(hashes, np.int64), np.frombuffer(offsets, np.int64)
    kept = 0
    for start in range(0, len(hashes), _DROP_BATCH):
        keep = open_(hashes[start:start + _DROP_BATCH])
        count = int(np.count_nonzero(keep))
        hashes[kept:kept + count] = hashes[start:start + _DROP_BATCH][keep]
        offsets[kept:kept + count] = offsets[start:start + _DROP_BATCH][keep]
        kept += count
    return kept


def _fast_lines(count, data, base, done, with_completed):
    """What the ``count`` lines of ``data`` (at offset ``base``) tell, found
    by their beginning (``_judged``); None when a line has another shape or
    may reopen a key."""
    found = EVENT_LINE.findall(marked(data))
    # One '{"event":' a line: a line with a second event glued on would
    # be noted by its beginning, then fail to parse when printed.  The
    # full parser reports it instead.
    if (len(found) != count or data.count(EVENT_START) != count
            or not all_lines_closed(count, data) or may_reopen(data)):
        return None
    kinds, keys = zip(*found) if found else ((), ())
    offsets = line_offsets(data) + base
    if kinds.count(b"queued") == count:  # (skip writes them by the million)
        completed = []
    else:
        is_open = [kind not in _DONE_KINDS for kind in kinds]
        completed = list(compress(keys, map(not_, is_open)))
        keys = list(compress(keys, is_open))
        offsets = offsets[is_open]
    return _judged(done.hash_array(keys), offsets, completed, [], done, with_completed)


def _slow_lines(path, first, data, base, done, with_completed):
    """``_fast_lines`` for any chunk (its first line number ``first``):
    every line parsed, the bad ones reported."""
    keys, offsets, completed, reopening = [], [], [], []
    for offset, event in _events_at(path, first, data):
        if event["event"] in DONE_EVENTS:
            completed.append(key_bytes(event))
        else:
            keys.append(key_bytes(event))
            offsets.append(base + offset)
            if reopens(event):
                reopening.append(len(keys) - 1)
    hashes = done.hash_keys(keys)
    reopening = [(hashes[i], offsets[i]) for i in reopening]
    return _judged(hashes, offsets, completed, reopening, done, with_completed)


def _judged(hashes, offsets, completed, reopening, done, with_completed):
    """The hashes and offsets of the lines of keys not in ``done`` (int64
    arrays), (``with_completed``) the hashes of the completed keys, and
    the (hash, offset) of the lines that reopen a key."""
    hashes = np.asarray(hashes, np.int64)
    open_ = ~done.contains_array(hashes)
    # A key completed here and reopened later (damaged, changed) stays open.
    completed = done.hash_keys(completed) if with_completed else []
    completed = list(compress(completed, done.contains_each(completed)))
    return hashes[open_], np.asarray(offsets, np.int64)[open_], completed, reopening


def line_offsets(data):
    """The offset of each line of a chunk of whole lines, as an array."""
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
    return np.concatenate(([0], ends + 1))[:len(ends)]


def _events_at(path, first, data, report=True):
    """(offset in ``data``, event) of each event of a chunk, parsed."""
    starts = line_starts(data)
    for line_number, event in events_in(path, first, data, report=report):
        yield starts[line_number - first], event
