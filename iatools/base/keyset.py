"""Compact sets of job keys: their 64-bit hashes, and numbers kept with them.

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
from array import array
from functools import partial

from iatools.base.keyhash import hash_all, hash_one, mix
from iatools.base.lazynumpy import np

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
#: Hashes looked up, written to or read from a checkpoint at a time: a
#: bounded copy.
_BATCH = 1 << 20
#: Numbers summed at a time by ``KeyMap.column_total``.
_GROUP = 1 << 16
#: Numbers below this in size add up, a group of them, within 63 bits.
_SAFE_TO_SUM = (1 << 63) // _GROUP


def _array(numbers):
    """A list (or set, or array) of hashes or numbers as an int64 numpy
    array.  A number beyond 64 bits (a job's "size" may be any whole
    number) is taken as its ``hash``, as it is wherever it is recorded."""
    if isinstance(numbers, np.ndarray):
        return numbers.astype(np.int64, copy=False)
    try:
        return np.fromiter(numbers, np.int64, len(numbers))
    except OverflowError:
        return np.fromiter(map(_within_64_bits, numbers), np.int64, len(numbers))


def _within_64_bits(number):
    return number if -1 << 63 <= number < 1 << 63 else hash(number)


def _distinct(ordered):
    """A sorted array without its repeated values."""
    if len(ordered) < 2:
        return ordered
    first = np.empty(len(ordered), bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered if first.all() else ordered[first]


def _union(one, other):
    """The values of two sorted arrays of distinct values, in one.  Those of
    the smaller that the larger holds are left out first, and a stable sort
    (timsort) of the two runs laid end to end only merges them: the result,
    and no more, is the memory it takes."""
    if len(other) > len(one):
        one, other = other, one
    if not len(other):
        return one
    joined = np.concatenate([one, other[~_found_sorted(one, other)]])
    joined.sort(kind="stable")
    return joined


def _found_unsorted(keys, hashes):
    """``_found_sorted`` of an array of queries in any order."""
    order = np.argsort(hashes)
    found = np.empty(len(hashes), bool)
    found[order] = _found_sorted(keys, hashes[order])
    return found


def _found_sorted(keys, ordered):
    """For a sorted array of queries, is each in the sorted array ``keys``?
    A batch at a time: a bounded copy."""
    found = np.empty(len(ordered), bool)
    for start in range(0, len(ordered), _BATCH):
        batch = ordered[start:start + _BATCH]
        at = np.searchsorted(keys, batch)
        np.minimum(at, len(keys) - 1, out=at)
        np.equal(keys[at], batch, out=found[start:start + _BATCH])
    return found


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
        return _distinct(self.keys) if self.repeats else self.keys

    def _index(self):
        bits = max(1, len(self.keys).bit_length() - 1)
        self._shift = 64 - bits
        # Where each bucket's first possible hash would go, a batch of
        # buckets at a time (a bounded copy).
        starts = np.empty((1 << bits) + 1, np.int32 if len(self.keys) < 1 << 31 else np.int64)
        for first in range(0, 1 << bits, _BATCH):
            buckets = np.arange(first, min(first + _BATCH, 1 << bits), dtype=np.int64)
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
                return _found_unsorted(self.keys, hashes)
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
        self._runs = self.__dict__.pop("_saved").load(_load_runs)
        return self._runs

    def _add(self, hashes):
        if len(hashes):
            self._fresh.append(_array(hashes))
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
        runs.append(_Run(_distinct(fresh)))
        while len(runs) > 1 and len(runs[-2].keys) <= 2 * len(runs[-1].keys):
            last = runs.pop()
            runs[-1] = _Run(_union(runs[-1].distinct(), last.distinct()))

    def _all(self):
        """Every hash held, once each, in one sorted array."""
        self._sort_fresh()
        runs = self._runs
        if len(runs) == 1 and not runs[0].repeats:
            return runs[0].keys
        keys = np.zeros(0, np.int64)
        while runs:
            run = runs.pop()
            keys = _union(keys, run.distinct())
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
                found |= _found_sorted(run.keys, hashes)
        elif len(hashes) > _SORT_QUERIES_OVER:
            for start in range(0, len(hashes), _BATCH):
                batch = hashes[start:start + _BATCH]
                order = np.argsort(batch)
                found[start:start + _BATCH][order] = self._contains(batch[order], ordered=True)
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
            others = _union(others, keys)
        if len(largest) and len(others):
            others = others[~_found_sorted(largest, others)]
        writer.section(8 + 8 * (len(largest) + len(others)),
                       lambda writer: _dump_merged(writer, largest, others))


class KeySet(_Hashes):
    """Hashes of keys (``hash_keys``)."""

    def __init__(self, salt=None, saved=None):
        super().__init__(saved)
        self.added = 0
        self.salt = int.from_bytes(os.urandom(8), "big") if salt is None else salt

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
        return self._contains(_array(hashes)).tolist()

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
            self.compact(without=_sorted_set(hashes))
            return
        self._sort_fresh()
        removed = sum(run.discard(hashes) for run in self._runs if len(run.keys))
        self.added = max(0, self.added - removed)

    def compact(self, without=None):
        """Hold the hashes once each (``added`` then counts them), none of
        those in the KeySet ``without``."""
        keys = self._all()
        if without is not None and len(keys):
            keys = keys[~without._contains(keys, ordered=True)]
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


def _sorted_set(hashes):
    """A KeySet of a few hashes, to compact another without them."""
    keys = KeySet(0)
    keys.add(hashes)
    return keys


class KeyMap:
    """For each key hash, the numbers (``width`` of them) added with it
    last: a sorted array of distinct hashes and one array for each number,
    and the records added since, in the order they came, merged into those
    at a lookup or once they are many."""

    def __init__(self, width, saved=None):
        self.width = width
        self.added = 0
        self._fresh, self._waiting = [], 0
        if saved is not None:
            self._saved = saved

    def __getattr__(self, name):
        # Called only until the records are first used: read from the
        # checkpoint then, or made empty.
        if name not in ("_keys", "_columns"):
            raise AttributeError(name)
        saved = self.__dict__.pop("_saved", None)
        if saved is None:
            self._keys, *self._columns = [np.zeros(0, np.int64)] * (self.width + 1)
        else:
            like = self.__dict__.pop("_keys_like", None)
            like = like and like.loaded_hashes()
            self._keys, *self._columns = saved.load(
                lambda reader: _load_arrays(reader, self.width + 1, like))
        return getattr(self, name)

    def add(self, hashes, *columns):
        """Add a record per hash, the numbers being the ``columns``' items."""
        self.added += len(hashes)
        if len(hashes):
            self._wait([_array(hashes), *map(_array, columns)])

    def _wait(self, records):
        """Hold records (a list: hashes, then each column) until a lookup,
        or until they are a million and half as many as those merged: a
        bound on what they hold twice, and on what a merge copies."""
        self._fresh.append(records)
        self._waiting += len(records[0])
        if self._waiting >= max(_SORT_AFTER, (self.added - self._waiting) // 2):
            self._settle()

    def _settle(self):
        """Merge the records added into the sorted arrays: each hash once,
        with the numbers added last; the sorted hashes."""
        if not self._fresh:
            return self._keys
        fresh, self._fresh, self._waiting = self._fresh, [], 0
        hashes = _taken(fresh, 0)
        # A stable sort: the latest record of a hash is the last of its run.
        order = np.argsort(hashes, kind="stable")
        hashes = hashes[order]
        last = np.empty(len(hashes), bool)
        last[-1] = True
        np.not_equal(hashes[1:], hashes[:-1], out=last[:-1])
        hashes, order = hashes[last], order[last]
        del last
        columns = [_taken(fresh, 1 + n)[order] for n in range(self.width)]
        del order
        if not len(self._keys):
            self._keys, self._columns = hashes, columns
            return hashes
        keys = self._keys
        at = np.searchsorted(keys, hashes)
        present = keys.take(at, mode="clip") == hashes
        if present.any():
            # Numbers of hashes held: replaced in place.
            for n, column in enumerate(columns):
                if not self._columns[n].flags.writeable:  # (read from a checkpoint)
                    self._columns[n] = self._columns[n].copy()
                self._columns[n][at[present]] = column[present]
            np.logical_not(present, out=present)
            at, hashes = at[present], hashes[present]
            columns = [column[present] for column in columns]
        # New hashes: inserted, a column at a time.
        self._keys = np.insert(keys, at, hashes)
        del keys
        for n, column in enumerate(columns):
            self._columns[n] = np.insert(self._columns[n], at, column)
        return self._keys

    def latest(self, hashes):
        """The numbers last added with each hash (a tuple), or None.  Looked
        up in the checkpoint, a batch at a time, while the records are
        still there and none was added since: a reading that folds a short
        tail asks for the sizes of a few keys among millions (40 MB for
        five million), and saves them as they were."""
        hashes = _array(hashes)
        if self._in_checkpoint():
            found, columns = self._saved.peek(partial(_find_saved, hashes, self.width))
        else:
            found, columns = self._find(hashes)
        records = zip(*(column.tolist() for column in columns))
        return [record if present else None for record, present in zip(records, found.tolist())]

    def _find(self, hashes):
        """For an int64 array of hashes: which are here (booleans), and the
        numbers of each column for each (0 for those not here)."""
        keys = self._settle()
        if not len(keys):
            return np.zeros(len(hashes), bool), [np.zeros(len(hashes), np.int64)] * self.width
        at = np.searchsorted(keys, hashes)
        np.minimum(at, len(keys) - 1, out=at)
        return keys[at] == hashes, [column[at] for column in self._columns]

    def _in_checkpoint(self):
        """Are the records still in the checkpoint, none added since?"""
        return "_saved" in self.__dict__ and not self._fresh

    def compact(self, without=None):
        """Keep only the latest record of each hash, and none of the hashes
        in the KeySet ``without``."""
        keys = self._settle()
        if without is not None and len(keys):
            self._keep(~without._contains(keys, ordered=True))
        self.added = len(self._keys)

    def _keep(self, kept):
        self._keys = self._keys[kept]
        self._columns = [column[kept] for column in self._columns]

    def adopt(self, hashes, *columns):
        """Hold the sorted int64 array of distinct ``hashes`` with a number
        of each column (int64 arrays) for each, and nothing else: no copy,
        no sort."""
        self._fresh, self._waiting = [], 0
        self._keys, self._columns = hashes, list(columns)
        self.added = len(hashes)

    def hashes(self):
        """The hash of every record, once each, as a sorted numpy array (an
        empty ``array``, numpy not imported, when there are none)."""
        return self._settle() if self.added else array("q")

    def update(self, later):
        """Add the records of the KeyMap ``later`` (of the same width) after
        those here."""
        later._settle()
        self.added += later.added
        if len(later._keys):
            self._wait([later._keys, *later._columns])

    def keys_and_tags(self, salt, columns, without=frozenset()):
        """A KeySet (of ``salt``) of the hashes here, and the TaggedKeys of
        the numbers at ``columns`` (0: the first) of their latest record;
        the hashes in the set ``without`` left out."""
        hashes = self._settle()
        numbers = [self._columns[n] for n in columns]
        if without:
            kept = ~_sorted_set(list(without))._contains(hashes, ordered=True)
            hashes, numbers = hashes[kept], [column[kept] for column in numbers]
        keys, tags = KeySet(salt), TaggedKeys()
        keys._keep(hashes)
        keys.added = len(hashes)
        tagged = _tags(hashes, *numbers)
        tagged.sort()
        tags._keep(_distinct(tagged))
        return keys, tags

    def column(self, n):
        """The numbers last added in column ``n``, in the order of
        ``hashes``: a numpy array."""
        self._settle()
        return self._columns[n]

    def column_total(self, without=None):
        """The sum of the numbers last added in the first column (not those
        of the hashes in the KeySet ``without``), exact: summed by numpy, a
        group at a time, where no sum of a group can pass 63 bits, else as
        Python integers (10 million sizes: 0.03 s, against 0.6)."""
        hashes = self._settle()
        total = 0
        for start in range(0, len(hashes), _GROUP):
            numbers = self._columns[0][start:start + _GROUP]
            if without is not None:
                numbers = numbers[~without._contains(hashes[start:start + _GROUP], ordered=True)]
            if len(numbers) and max(-int(numbers.min()), int(numbers.max())) >= _SAFE_TO_SUM:
                total += sum(numbers.tolist())
            else:
                total += int(numbers.sum())
        return total

    def dump(self, writer):
        writer.write(self.added.to_bytes(8, "big"))
        if self._in_checkpoint():
            saved = self._saved
            writer.section(saved.size, saved.copy_to)
            return
        arrays = [self._settle(), *self._columns]
        writer.section(8 + 8 * len(arrays) * len(arrays[0]),
                       lambda writer: _dump_arrays(writer, arrays))

    def dumped_size(self):
        return 24 + 8 * (self.width + 1) * self.added

    @classmethod
    def load(cls, reader, width, keys_like=None):
        """The KeyMap ``dump`` wrote, read at its first use.  If the KeySet
        ``keys_like`` is in memory by then and holds the same hashes, the
        map shares its array of them instead of reading its own (a status
        checkpoint's sizes are those of the keys not completed, which its
        set of keys seen holds: 40 MB for five million)."""
        added = int.from_bytes(reader.read(8), "big")
        keys = cls(width, reader.section())
        keys.added = added
        keys._keys_like = keys_like
        return keys


class TaggedKeys(_Hashes):
    """A 64-bit tag of some numbers (say, an item's version) for each of a
    set of key hashes: "does key h have tag t" is one lookup of the tag of
    (h, t).  (Built by ``KeyMap.keys_and_tags``.)"""

    def has_each(self, hashes, *numbers):
        """A numpy array of booleans: is each key hash here, tagged with the
        numbers given with it (the ``numbers``' items)?"""
        return self._contains(_tags(_array(hashes), *map(_array, numbers)))

    dump = _Hashes._dump_runs

    def dumped_size(self):
        return 16 + 8 * sum(len(run.keys) for run in self._runs)

    @classmethod
    def load(cls, reader):
        return cls(reader.section())


def _taken(parts, n):
    """Item ``n`` of each list of ``parts``, joined in one array; each let go."""
    joined = np.concatenate([part[n] for part in parts])
    for part in parts:
        part[n] = None
    return joined


def _tags(hashes, *numbers):
    """The tag of each key hash and its numbers (int64 arrays): each number
    mixed into the hash by splitmix64's finalizer, a bijection of 64-bit
    values whose every output bit depends on every input bit."""
    tags = hashes.view(np.uint64)
    for column in numbers:
        tags = mix(mix(tags) ^ column.view(np.uint64))
    return tags.view(np.int64)


def _dump_array(writer, values):
    for start in range(0, len(values), _BATCH):
        writer.write(memoryview(values[start:start + _BATCH]).cast("B"))


def _dump_merged(writer, largest, others):
    """The values of two sorted arrays of distinct values, none in both,
    as ``_dump_array`` would write their union: each batch of ``largest``
    with the values of ``others`` below the next batch."""
    writer.write((len(largest) + len(others)).to_bytes(8, "little"))
    taken = 0
    for start in range(0, len(largest), _BATCH):
        batch, end = largest[start:start + _BATCH], start + _BATCH
        upto = int(np.searchsorted(others, largest[end])) if end < len(largest) else len(others)
        if upto > taken:
            batch = np.concatenate([batch, others[taken:upto]])
            batch.sort(kind="stable")  # (two sorted runs: merged)
            taken = upto
        writer.write(memoryview(batch).cast("B"))
    _dump_array(writer, others[taken:])


def _dump_arrays(writer, arrays):
    """The number of values, then each array: for _load_arrays."""
    writer.write(len(arrays[0]).to_bytes(8, "little"))
    for values in arrays:
        _dump_array(writer, np.ascontiguousarray(values, np.int64))


def _load_arrays(reader, count, like=None):
    """The arrays ``_dump_arrays`` wrote; the first one is the sorted array
    ``like`` when it holds the same values (compared a batch at a time:
    never read into an array of its own)."""
    size = int.from_bytes(reader.read(8), "little")
    first = _read_like(reader, size, like) if like is not None and len(like) == size else None
    if first is None:
        first = np.frombuffer(reader.read(8 * size), np.int64)
    return [first] + [np.frombuffer(reader.read(8 * size), np.int64) for _ in range(count - 1)]


def _places_in_saved(reader, asked):
    """The number of sorted hashes that ``_dump_arrays`` wrote first, and
    where each of the sorted array ``asked`` is among them (-1 where it is
    not), read a batch at a time."""
    size = int.from_bytes(reader.read(8), "little")
    at = np.full(len(asked), -1, np.int64)
    for start in range(0, size, _BATCH):
        keys = np.frombuffer(reader.read(8 * min(_BATCH, size - start)), np.int64)
        place = np.searchsorted(keys, asked)
        hit = keys.take(place, mode="clip") == asked
        at[hit] = start + place[hit]
    return size, at


def _found_in_saved(ordered, reader):
    """``_found_sorted`` among the hashes of a set's section (``_load_runs``)."""
    return _places_in_saved(reader, ordered)[1] >= 0


def _find_saved(hashes, width, reader):
    """``KeyMap._find`` of the records as ``_dump_arrays`` wrote them,
    read a batch at a time: the hashes, then each column."""
    order = np.argsort(hashes)
    size, at = _places_in_saved(reader, hashes[order])
    # Back in the order asked.
    at[order] = at.copy()
    columns = [np.zeros(len(at), np.int64) for _ in range(width)]
    for column in columns:
        for start in range(0, size, _BATCH):
            values = np.frombuffer(reader.read(8 * min(_BATCH, size - start)), np.int64)
            here = (at >= start) & (at < start + len(values))
            column[here] = values[at[here] - start]
    return at >= 0, columns


def _read_like(reader, size, like):
    """``like``, if the next ``size`` values are its values; else those
    values, read whole."""
    for start in range(0, size, _BATCH):
        batch = np.frombuffer(reader.read(8 * min(_BATCH, size - start)), np.int64)
        if not np.array_equal(batch, like[start:start + _BATCH]):
            rest = np.frombuffer(reader.read(8 * (size - start - len(batch))), np.int64)
            return np.concatenate([like[:start], batch, rest])
    return like


def _load_runs(reader):
    (keys,) = _load_arrays(reader, 1)
    for start in range(0, len(keys) - 1, _BATCH):
        end = min(start + _BATCH, len(keys) - 1)
        if not (keys[start + 1:end + 1] > keys[start:end]).all():
            raise ValueError("not a key set")
    return [_Run(keys)]

