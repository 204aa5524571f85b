"""The checkpoints of a new log, saved by the skip that fills it.

A run begins with ``skip`` queueing every job into a new log -- ten million
of them in seconds -- and someone types ``ia-joblog status`` or
``pending`` at once.  Without checkpoints, that reading parses every queued
event (18 s for ten million; pending 25 s), and the refresh that skip
would leave behind takes longer still.  But skip has every job's key and
size in hand as it writes its event: so, when the log is empty as it
starts, it notes the hash of each key, the size and the line's offset (32
bytes a job), sorts the hashes and sizes a million at a time on a second
thread (numpy sorts without the interpreter's lock), and at the end merges
the sorted runs, counts the keys and saves the three checkpoints itself
(iatools.log.logstate, completions, openjobs), for the whole log, and no
refresh is left to run: on J1's ten million jobs, about 8 s more for skip than
without any (1 s of it for the pending checkpoint), and status right after
it takes 0.2 s instead of 17, pending 5 s instead of 25.

Only while the log holds nothing but what this skip wrote: a batch that
lands anywhere but where the last one ended (another writer, a torn line),
an event that reopens a key, or a size past 64 bits, and it gives up
(freeing what it noted); the refresh then does the work.  At the end, the
log must still be as skip left it: its writers' stamp holds, with skip's
epoch, and its length is where skip's last batch ended.  A job queued twice
leaves the pending checkpoint to the refresh (each key's first line is
what pending prints).
"""

import os
import zlib
from concurrent.futures import ThreadPoolExecutor

from iatools.base import errors
from iatools.base.lazynumpy import np
from iatools.contract.linegrammar import LAST_TS
from iatools.log import checkpoint
from iatools.log.completions import NO_SIZE, Completions
from iatools.log.logstate import LogState
from iatools.log.openjobs import OpenJobs, line_offsets


#: Hashes sorted at a time into a run, on another thread.
_RUN = 1 << 20


class QueuedIndex:
    """What a skip into a new log queued: the key hashes and sizes
    (``NO_SIZE`` when a job gives none), and where its events end."""

    def __init__(self, path, salt):
        self.path = path
        self.state = LogState(salt=salt)
        # Arrays of the hashes and sizes, a batch of events each, until
        # they are a run: sorted by hash (a future of the two arrays).
        self._hashes, self._sizes = [], []
        self._waiting = 0
        # The hashes in log order, and the offsets of the lines (0.35 s of
        # numpy for ten million; on the sorting thread, its many small
        # steps took the interpreter's lock from skip's: 5 s more).
        self._in_order, self._starts = [], []
        self._runs = []
        self._sorter = ThreadPoolExecutor(1)
        self._end, self._lines, self._crc = 0, 0, 0
        self._last_ts = ""
        self.given_up = False

    @classmethod
    def for_new_log(cls, path, salt):
        """A QueuedIndex for the log at ``path`` if it is empty or does not
        exist yet, else None; the keys are hashed with ``salt``."""
        try:
            empty = os.stat(path).st_size == 0
        except FileNotFoundError:
            empty = True
        except OSError:
            empty = False
        return cls(path, salt) if empty else None

    def wrote(self, offset, events, hashes, sizes):
        """After skip appended ``events`` (whole lines, one per job) at
        ``offset`` (None when there were none): the hashes of the jobs'
        keys and their sizes (lists of arrays)."""
        if self.given_up or offset is None:
            return
        lines = sum(event.count(b"\n") for event in events)
        hashes = np.concatenate(hashes) if hashes else np.empty(0, np.int64)
        if offset != self._end or lines != len(hashes):
            self.give_up(f"{len(hashes)} jobs in {lines} lines at byte {offset}")
            return
        try:
            self._sizes.append(np.array(np.concatenate(sizes), np.int64))
        except OverflowError:
            self.give_up("a size past 64 bits")
            return
        self._hashes.append(hashes)
        self._in_order.append(hashes)
        self._waiting += len(hashes)
        if self._waiting >= _RUN:
            self._make_run()
        for event in events:
            self._starts.append(line_offsets(event) + self._end)
            self._crc = zlib.crc32(event, self._crc)
            self._end += len(event)
        self._lines += lines
        last = events[-1]
        ts = LAST_TS.match(last, last.rfind(b"\n", 0, -1) + 1)
        self._last_ts = max(self._last_ts, ts[1].decode() if ts else "")

    def give_up(self, why):
        if not self.given_up:
            errors.debug(f"{self.path}: skip leaves its status checkpoint to the refresh ({why})")
        self.given_up = True
        self._hashes, self._sizes, self._runs = [], [], []
        self._in_order, self._starts = [], []
        self.close()

    def _make_run(self):
        """Sort the hashes and sizes noted since the last run, on another
        thread: numpy sorts without the interpreter's lock, so on the other
        core, while skip goes on."""
        hashes, sizes = self._hashes, self._sizes
        self._hashes, self._sizes, self._waiting = [], [], 0
        self._runs.append(self._sorter.submit(_sorted_run, hashes, sizes))

    def save(self, epoch):
        """Save the checkpoints of the log if it holds just what was noted,
        written in the stamp's ``epoch``, and is worth them; were all of
        them saved (else a refresh is to do the rest)?"""
        try:
            if self.given_up or self._end < checkpoint.SAVE_AFTER:
                return False
            if (checkpoint.current_epoch(self.path) != epoch
                    or os.stat(self.path).st_size != self._end):
                self.give_up("the log changed since")
                return False
            return self._save(epoch)
        finally:
            self.close()

    def close(self):
        """Let go of the sorting thread (``save`` does)."""
        self._sorter.shutdown(wait=False, cancel_futures=True)

    def _save(self, epoch):
        if self._hashes:
            self._make_run()
        runs = [run.result() for run in self._runs]
        self._runs = []
        hashes, sizes = _merged(runs)
        state = self.state
        sized = sizes != NO_SIZE
        if sized.all():
            state.sizes.adopt(hashes, sizes)
        else:
            state.sizes.adopt(hashes[sized], sizes[sized])
        state.seen.adopt(hashes)
        state.last_ts = self._last_ts
        position = checkpoint.Position(self._end, 1 + self._lines, self._crc)
        state.save_counted(self.path, position, epoch)
        # Let go of the sizes (80 MB for ten million) before the next two.
        salt, self.state = state.completed.salt, None
        del state, sizes, sized
        return self._save_open(position, epoch, hashes, salt)

    def _save_open(self, position, epoch, ordered, salt):
        """The completed and pending checkpoints: no key completed, each
        line the first of an open key -- unless a key was queued twice
        (``ordered``, the hashes sorted, then has fewer than the lines): a
        case for the refresh."""
        if len(ordered) != self._lines:
            errors.debug(f"{self.path}: skip leaves its pending checkpoint to the refresh "
                         "(a job queued twice)")
            return False
        hashes, self._in_order = np.concatenate(self._in_order), []
        starts, self._starts = np.concatenate(self._starts), []
        Completions.save_none(self.path, position, epoch, salt)
        OpenJobs.save_all_open(self.path, position, epoch, salt, hashes, starts, ordered)
        return True


def _merged(runs):
    """The sorted runs of hashes and sizes (a list, emptied) as one sorted
    array of distinct hashes and one of their latest sizes: a stable sort
    of the runs one after the other merges them, in a few passes."""
    hashes = np.concatenate([hashes for hashes, _ in runs])
    sizes = np.concatenate([sizes for _, sizes in runs])
    runs.clear()
    order = np.argsort(hashes, kind="stable")
    hashes = hashes[order]
    sizes = sizes[order]
    del order
    # The last of each run of one hash is the latest.
    latest = np.ones(len(hashes), bool)
    np.not_equal(hashes[1:], hashes[:-1], out=latest[:-1])
    if latest.all():
        return hashes, sizes
    return hashes[latest], sizes[latest]


def _sorted_run(hashes, sizes):
    """The arrays of hashes and of their sizes joined, sorted by hash (a
    hash queued twice keeps its order: the later size is the latest)."""
    hashes, sizes = np.concatenate(hashes), np.concatenate(sizes)
    order = np.argsort(hashes, kind="stable")
    return hashes[order], sizes[order]
