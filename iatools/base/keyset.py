"""Compact sets of job keys: their 64-bit hashes (iatools.base.keymap keeps
numbers with them).

Keys are the bytes that iatools.contract.linegrammar takes out of a line (``KEY``)
or makes of a parsed job (``key_bytes``).

A ``KeySet`` holds hashes of such keys in sorted numpy arrays, 8 bytes
each and two to four more for an index, where a Python set of ints takes
about 75: 7 million keys in 70 to 84 MB rather than 550.  Hashes are added in
batches (a list of them is turned into an array in C), sorted when they
are looked up or pass a million, and merged with the runs sorted before
(numpy's stable sort merges two sorted runs in one linear pass): adding
costs about 0.13 µs a hash, looking one up among 7 million 0.2 to 0.3 µs,
where the 65,536 bytearray buckets this replaces (driven by ``map``) took
0.6 and 1.4 µs.  A merge copies the arrays merged: a first reading of a
log holds about a quarter more at its peak than with the buckets.  The
commit that brought numpy in gives the numbers, on the 10-million-job log
of the benchmarks.
"""

import os
from functools import partial

from iatools.base.keyhash import hash_all, hash_one, mix
from iatools.base.lazynumpy import np
from iatools.base.sortedarrays import (BATCH, as_int64, distinct, dump_merged, found_sorted,
                                       found_unsorted, load_arrays, places_in_saved, union)

#: Hashes added are sorted into a run of their own once they are this many
#: (or at the next lookup): a bound on what waits unsorted, duplicates
#: included.
_SORT_AFTER = 1 << 20
#: Lookups of more hashes than this at once sort them first: their searches
#: then walk each run in order, instead of missing the cache at each step.
#: (Measured among 7 million keys: below about 200,000 at once, the sort
#: costs more than it saves; at 4,096, three times the lookups by index.)
_SORT_QUERIES_OVER = 1 << 18
#: A run builds its index once the hashes looked up in it add up to an
#: eighth of its keys, or at its 64th lookup; before, each hash is found by
#: a binary search, the hashes sorted first.  (10 million keys: the index
#: takes 0.26 s and 34 MB to build, then finds a hash in 100 ns, against
#: 300 by binary search in a batch of 50,000, up to 1,000 in small ones.  A
#: reading that folds a short tail asks a few large batches and never needs
#: it; skip asks for every job, a chunk at a time, and builds it early.)
_INDEX_AFTER, _INDEX_AT_LOOKUP = 8, 64
#: The places of its bucket where a lookup looks for a hash first: buckets
#: hold one to two hashes on average; among 7 million random hashes, one
#: bucket in 36 holds more than four, the widest 12.  (Before, every lookup
#: took as many places as the widest bucket had, 17 for four to a bucket.)
_WINDOW = 4


class _Run:
    """A sorted array of distinct hashes, with an index of where each
    bucket of it begins (the buckets chosen by the top bits of a hash, about
    two hashes to a bucket), built once enough lookups use it
    (``_INDEX_AFTER``, ``_INDEX_AT_LOOKUP``): a small batch of hashes is
    looked up in the first ``_WINDOW`` places of its bucket, in C, with
    about two cache misses per hash; the few hashes of longer buckets not
    found there, by a binary search."""

    __slots__ = ("keys", "repeats", "_starts", "_shift", "_long_buckets", "_asked",
                 "_lookups")

    def __init__(self, keys):
        self.keys = keys
        #: Does ``keys`` hold a value twice (after ``discard``)?
        self.repeats = False
        self._starts = None
        self._asked = self._lookups = 0  # before the index was built

    def distinct(self):
        """The keys, each once."""
        return distinct(self.keys) if self.repeats else self.keys

    def _index(self):
        bits = max(1, len(self.keys).bit_length() - 1)
        self._shift = 64 - bits
        # Where each bucket's first possible hash would go, a batch of
        # buckets at a time (a bounded copy).
        starts = np.empty((1 << bits) + 1, np.int32 if len(self.keys) < 1 << 31 else np.int64)
        for first in range(0, 1 << bits, BATCH):
            buckets = np.arange(first, min(first + BATCH, 1 << bits), dtype=np.int64)
            lowest = (buckets - (1 << (bits - 1))) << self._shift
            starts[first:first + len(buckets)] = np.searchsorted(self.keys, lowest)
        starts[-1] = len(self.keys)
        self._starts = starts
        self._long_buckets = bool((np.diff(starts) > _WINDOW).any())

    def _buckets(self, hashes):
        # The top bits, as a signed number, plus half their range: in the
        # order of the hashes.
        bits = 64 - self._shift
        return (hashes >> self._shift) + (1 << (bits - 1))

    def contains(self, hashes):
        """Is each hash of an unsorted array here?"""
        if self._starts is None:
            self._asked += len(hashes)
            self._lookups += 1
            if self._asked * _INDEX_AFTER < len(self.keys) and self._lookups < _INDEX_AT_LOOKUP:
                return found_unsorted(self.keys, hashes)
            self._index()
        buckets = self._buckets(hashes)
        starts = self._starts[buckets]
        # A match past the bucket's end is still a hash held.
        window = self.keys.take(starts[:, None] + np.arange(_WINDOW), mode="clip")
        found = (window == hashes[:, None]).any(axis=1)
        if self._long_buckets:
            rest = np.flatnonzero(~found & (self._starts[buckets + 1] - starts > _WINDOW))
            if len(rest):
                asked = hashes[rest]
                found[rest] = self.keys.take(np.searchsorted(self.keys, asked), mode="clip") == asked
        return found

    def __contains__(self, h):
        if self._starts is None:
            self._index()
        bucket = (h >> self._shift) + (1 << (63 - self._shift))
        start, end = self._starts[bucket:bucket + 2].tolist()
        return h in self.keys[start:end].tolist()

    def discard(self, hashes):
        """Remove hashes: each one's place takes the value before it (or
        after it), so that the array stays sorted and its index right; the
        repeated values go at the next merge.  The number removed."""
        keys = self.keys
        found = [h for h in hashes if h in self]
        if found and not keys.flags.writeable:
            keys = self.keys = keys.copy()  # (read from a checkpoint)
        for h in found:
            start, end = int(np.searchsorted(keys, h, "left")), int(np.searchsorted(keys, h, "right"))
            if start == 0 and end == len(keys):
                keys = self.keys = keys[:0]
                self._starts = None
            else:
                keys[start:end] = keys[start - 1] if start else keys[end]
                self.repeats = True
        return len(found)


class _Hashes:
    """A set of 64-bit hashes: sorted runs of distinct hashes (``_Run``),
    each at most half the size of the one before, and the hashes added
    since, unsorted.  Saved in a section of a checkpoint
    (iatools.log.checkpoint) as one sorted array, read back at its first
    use: a reading that looks no key up (a log with no events after its
    checkpoint) leaves it on disk, tens of megabytes for millions of keys."""

    def __init__(self, saved=None):
        self._fresh, self._waiting = [], 0
        if saved is None:
            self._runs = []
        else:
            self._saved = saved

    def __getattr__(self, name):
        # Called only while ``_runs`` is still in the checkpoint.
        if name != "_runs" or "_saved" not in self.__dict__:
            raise AttributeError(name)
        self.load_saved()
        return self._runs

    def load_saved(self):
        """Read the hashes in from their checkpoint section now, if they are
        still there: before forked children look keys up, which would each
        read them, through the one file offset they share."""
        if "_saved" in self.__dict__:
            self._runs = self.__dict__.pop("_saved").load(_load_runs)

    def _add(self, hashes):
        if len(hashes):
            self._fresh.append(as_int64(hashes))
            self._waiting += len(hashes)
            if self._waiting >= _SORT_AFTER:
                self._sort_fresh()

    def _sort_fresh(self):
        """Sort the hashes added into a run; merge the runs that are no
        longer at least twice the size of the next."""
        if not self._fresh:
            return
        fresh = np.concatenate(self._fresh)
        self._fresh, self._waiting = [], 0
        if not (fresh[1:] >= fresh[:-1]).all():  # (2 ns a hash; a sort 60)
            fresh.sort()
        runs = self._runs
        runs.append(_Run(distinct(fresh)))
        while len(runs) > 1 and len(runs[-2].keys) <= 2 * len(runs[-1].keys):
            last = runs.pop()
            runs[-1] = _Run(union(runs[-1].distinct(), last.distinct()))

    def _all(self):
        """Every hash held, once each, in one sorted array."""
        self._sort_fresh()
        runs = self._runs
        if len(runs) == 1 and not runs[0].repeats:
            return runs[0].keys
        keys = np.zeros(0, np.int64)
        while runs:
            run = runs.pop()
            keys = union(keys, run.distinct())
        self._runs = [_Run(keys)]
        return keys

    def _contains(self, hashes, ordered=False):
        """An array of booleans: is each hash of an int64 array (sorted, if
        ``ordered``) here?"""
        self._sort_fresh()
        runs = [run for run in self._runs if len(run.keys)]
        found = np.zeros(len(hashes), bool)
        if ordered:
            for run in runs:
                found |= found_sorted(run.keys, hashes)
        elif len(hashes) > _SORT_QUERIES_OVER:
            for start in range(0, len(hashes), BATCH):
                batch = hashes[start:start + BATCH]
                order = np.argsort(batch)
                found[start:start + BATCH][order] = self._contains(batch[order], ordered=True)
        else:
            for run in runs:
                found |= run.contains(hashes)
        return found

    def __contains__(self, h):
        self._sort_fresh()
        return any(h in run for run in self._runs)

    def contains_unloaded(self, ordered):
        """``contains_array`` of a sorted array of hashes, for one large
        lookup among millions (a reading's tail): a set still in its
        checkpoint, nothing added since, is read a batch at a time and
        never held."""
        saved = self.__dict__.get("_saved")
        if saved is None or self._fresh:
            return self._contains(ordered, ordered=True)
        return saved.peek(partial(_found_in_saved, ordered))

    def _keep(self, kept):
        """Hold only the hashes of the sorted array ``kept``."""
        self._runs = [_Run(kept)]

    def _dump_runs(self, writer):
        """Write every hash held, once each, sorted (for ``_load_runs``):
        the largest run merged with the others a batch at a time, never
        all in one new array (a reading that folds a short tail into ten
        million keys would make a copy of 80 MB to write them)."""
        self._sort_fresh()
        runs = sorted((run.distinct() for run in self._runs), key=len)
        largest = runs.pop() if runs else np.zeros(0, np.int64)
        others = np.zeros(0, np.int64)
        for keys in runs:
            others = union(others, keys)
        if len(largest) and len(others):
            others = others[~found_sorted(largest, others)]
        writer.section(8 + 8 * (len(largest) + len(others)),
                       lambda writer: dump_merged(writer, largest, others))


class KeySet(_Hashes):
    """Hashes of keys (``hash_keys``)."""

    def __init__(self, salt=None, saved=None):
        super().__init__(saved)
        self.added = 0
        self.salt = int.from_bytes(os.urandom(8), "big") if salt is None else salt

    @classmethod
    def of(cls, hashes):
        """A KeySet of a few hashes (a list), to look up or to compact
        another without them."""
        keys = cls(0)
        keys.add(hashes)
        return keys

    def hash_keys(self, keys):
        """The 64-bit hashes of a list of keys (bytes), as a list
        (iatools.base.keyhash)."""
        return hash_all(keys, self.salt).tolist() if keys else []

    def hash_array(self, keys):
        """``hash_keys`` as an int64 numpy array."""
        return hash_all(keys, self.salt)

    def hash_key(self, key):
        return hash_one(key, self.salt)

    def add(self, hashes):
        """Add a list of hashes; ``added`` counts them, those already present
        too (they are held once)."""
        self._add(hashes)
        self.added += len(hashes)

    def adopt(self, hashes):
        """Hold the sorted int64 array of distinct ``hashes``, and nothing
        else: no copy, no sort."""
        self._fresh, self._waiting = [], 0
        self._keep(hashes)
        self.added = len(hashes)

    def contains_each(self, hashes):
        """A list of booleans: is each hash of the list present?"""
        return self._contains(as_int64(hashes)).tolist()

    def contains_array(self, hashes, ordered=False):
        """``contains_each`` of an int64 numpy array (sorted, if
        ``ordered``), as a numpy array."""
        return self._contains(hashes, ordered)

    def discard(self, hashes):
        """Remove each of the hashes (a list or a set)."""
        hashes = list(hashes)
        if not hashes:
            return  # (and the set may stay in its checkpoint)
        if len(hashes) > _SORT_QUERIES_OVER:
            self.compact(without=KeySet.of(hashes))
            return
        self._sort_fresh()
        removed = sum(run.discard(hashes) for run in self._runs if len(run.keys))
        self.added = max(0, self.added - removed)

    def compact(self, without=None):
        """Hold the hashes once each (``added`` then counts them), none of
        those in the KeySet ``without``."""
        keys = self._all()
        if without is not None and len(keys):
            found = without._contains(keys, ordered=True)
            if found.any():  # (else no copy: skip's ten million keys, 80 MB)
                keys = keys[~found]
                self._keep(keys)
        self.added = len(keys)

    def dump(self, writer):
        """Write the set for ``load``: the salt, the number of hashes added,
        then the hashes, sorted (a section)."""
        writer.write(self.salt.to_bytes(8, "big") + self.added.to_bytes(8, "big"))
        self._dump_runs(writer)

    def dumped_size(self):
        return 32 + 8 * self.added

    @classmethod
    def load(cls, reader):
        salt, added = int.from_bytes(reader.read(8), "big"), int.from_bytes(reader.read(8), "big")
        keys = cls(salt, reader.section())
        keys.added = added
        return keys

    def __bool__(self):
        return self.added > 0

    def loaded_hashes(self):
        """The sorted array of every hash held, when it is in memory as read
        from a checkpoint, unchanged (a KeyMap of the same keys may then
        share it: nothing writes into it); else None."""
        runs = self.__dict__.get("_runs")
        if runs is None or self._fresh or len(runs) != 1 or runs[0].repeats:
            return None
        keys = runs[0].keys
        return None if keys.flags.writeable else keys

    def hashes(self):
        """Every hash held, once each, as a sorted numpy array."""
        return self._all()

    def count_with(self, other):
        """The number of distinct hashes here, and in the union with other."""
        mine, theirs = self._all(), other._all()
        both = int(np.count_nonzero(self._contains(theirs, ordered=True)))
        return len(mine), len(mine) + len(theirs) - both


class TaggedKeys(_Hashes):
    """A 64-bit tag of some numbers (say, an item's version) for each of a
    set of key hashes: "does key h have tag t" is one lookup of the tag of
    (h, t).  (Built by ``KeyMap.keys_and_tags``.)"""

    @classmethod
    def of(cls, hashes, *numbers):
        """The TaggedKeys of key hashes (an int64 array of distinct ones) and
        the numbers given with each (int64 arrays, one per number)."""
        tagged = _tags(hashes, *numbers)
        tagged.sort()
        tags = cls()
        tags._keep(distinct(tagged))
        return tags

    def has_each(self, hashes, *numbers):
        """A numpy array of booleans: is each key hash here, tagged with the
        numbers given with it (the ``numbers``' items)?"""
        return self._contains(_tags(as_int64(hashes), *map(as_int64, numbers)))

    dump = _Hashes._dump_runs

    def dumped_size(self):
        return 16 + 8 * sum(len(run.keys) for run in self._runs)

    @classmethod
    def load(cls, reader):
        return cls(reader.section())


def _tags(hashes, *numbers):
    """The tag of each key hash and its numbers (int64 arrays): each number
    mixed into the hash by splitmix64's finalizer, a bijection of 64-bit
    values whose every output bit depends on every input bit."""
    tags = hashes.view(np.uint64)
    for column in numbers:
        tags = mix(mix(tags) ^ column.view(np.uint64))
    return tags.view(np.int64)


def _load_runs(reader):
    (keys,) = load_arrays(reader, 1)
    for start in range(0, len(keys) - 1, BATCH):
        end = min(start + BATCH, len(keys) - 1)
        if not (keys[start + 1:end + 1] > keys[start:end]).all():
            raise ValueError("not a key set")
    return [_Run(keys)]


def _found_in_saved(ordered, reader):
    """``found_sorted`` among the hashes of a set's section (``_load_runs``)."""
    return places_in_saved(reader, ordered)[1] >= 0
