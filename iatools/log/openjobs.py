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

from array import array
from functools import partial
from itertools import compress
from operator import not_

from iatools.base.keyset import KeySet
from iatools.base.lazynumpy import np
from iatools.contract.linegrammar import (DONE_EVENTS, EVENT_LINE, EVENT_START, all_lines_closed,
                                          key_bytes, line_starts, marked, may_reopen, reopens)
from iatools.log import checkpoint
from iatools.log.eventlog import events_in, read_chunks, texts_at

#: Keys judged against the completed ones at a time, when lines are read back.
_BATCH = 1 << 16
#: Open lines noted at a time (``OpenJobs._note``).
_NOTE_AFTER = 1 << 20
#: The kinds of event that complete a key, as a line spells them.
_DONE_KINDS = frozenset(kind.encode() for kind in DONE_EVENTS)


class OpenJobs:
    """Keys not completed when seen (hashed with the salt of the completed
    keys), and the offset of the first line of each, in log order."""

    def __init__(self, salt):
        self.noted = KeySet(salt)
        self.hashes = array("q")
        self.offsets = array("q")
        # Open lines found, not yet noted (``_note``): arrays of hashes and
        # offsets, how many.
        self._waiting, self._waiting_count = [], 0

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
            jobs._note(hashes, offsets + position.offset)
            completed_since.add(completed)
            reopened.update((h, position.offset + offset) for h, offset in reopening)
            position = position.after(data, lines)
        jobs._settle()
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
        found = EVENT_LINE.findall(marked(data))
        # One '{"event":' a line: a line with a second event glued on would
        # be noted by its beginning, then fail to parse when printed.  The
        # full parser reports it instead.
        if (len(found) == count and data.count(EVENT_START) == count
                and all_lines_closed(count, data) and not may_reopen(data)):
            kinds, keys = zip(*found) if found else ((), ())
            offsets = _line_offsets(data)
            if kinds.count(b"queued") == count:  # (skip writes them by the million)
                completed = []
            else:
                is_open = [kind not in _DONE_KINDS for kind in kinds]
                completed = list(compress(keys, map(not_, is_open)))
                keys = list(compress(keys, is_open))
                offsets = offsets[is_open]
            hashes = done.hash_array(keys)
            reopening = []
        else:
            keys, offsets, completed, reopening = [], [], [], []
            for offset, event in _events_at(path, first, data):
                if event["event"] in DONE_EVENTS:
                    completed.append(key_bytes(event))
                else:
                    keys.append(key_bytes(event))
                    offsets.append(offset)
                    if reopens(event):
                        reopening.append(len(keys) - 1)
            hashes = done.hash_keys(keys)
            reopening = [(hashes[i], offsets[i]) for i in reopening]
        open_ = ~done.contains_array(np.asarray(hashes, np.int64))
        # A key completed here and reopened later (damaged, changed) stays open.
        completed = done.hash_keys(completed) if with_completed else []
        completed = list(compress(completed, done.contains_each(completed)))
        return (np.asarray(hashes, np.int64)[open_], np.asarray(offsets, np.int64)[open_],
                completed, reopening)

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
        first = np.sort(first[~self.noted.contains_array(distinct, ordered=True)])
        self.noted.add(hashes[first])
        self.hashes.frombytes(hashes[first].tobytes())
        self.offsets.frombytes(offsets[first].tobytes())

    def _drop(self, completed):
        """Forget the noted keys in the KeySet ``completed``, in numpy.  Few
        completions (a tail since the checkpoint) are looked up among the
        noted keys, and the noted lines then found among the few found, by
        a binary search; more are looked up by the noted lines.  (A list of
        booleans for ``compress`` took 4.9 s for 10 million noted keys and
        2.3 million completions; this, 0.9.)"""
        if not completed:
            return
        hashes = np.frombuffer(self.hashes, np.int64)
        if completed.added <= len(hashes) // 4:
            candidates = completed.hashes()
            found = candidates[self.noted.contains_array(candidates, ordered=True)]
            if not len(found):
                return
            keep = found.take(np.searchsorted(found, hashes), mode="clip") != hashes
            # Forgotten, so that a line that reopens one later is noted afresh.
            self.noted.discard(found.tolist())
        else:
            keep = ~completed.contains_array(hashes)
            self.noted.compact(without=completed)
        self.hashes = _kept(self.hashes, keep)
        self.offsets = _kept(self.offsets, keep)

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
        """The first lines of the noted keys, in log order, in batches: the
        (text, count) of ``texts_at``."""
        for start in range(0, len(self.offsets), _BATCH):
            yield from texts_at(path, self.offsets[start:start + _BATCH])

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


def _kept(numbers, keep):
    """The numbers of an array("q") where the numpy array of booleans
    ``keep`` is true, as an array("q")."""
    kept = array("q")
    kept.frombytes(np.frombuffer(numbers, np.int64)[keep].tobytes())
    return kept


def _line_offsets(data):
    """The offset of each line of a chunk of whole lines, as an array."""
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
    return np.concatenate(([0], ends + 1))[:len(ends)]


def _events_at(path, first, data, report=True):
    """(offset in ``data``, event) of each event of a chunk, parsed."""
    starts = line_starts(data)
    for line_number, event in events_in(path, first, data, report=report):
        yield starts[line_number - first], event
