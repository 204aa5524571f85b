"""For each of a set of key hashes, the numbers added with it last (the
sizes of the keys still to do, the offset and version of each completion):
``KeyMap``, sorted arrays as in iatools.base.keyset, one for the hashes and
one for each number."""

from array import array
from functools import partial

from iatools.base.keyset import KeySet, TaggedKeys
from iatools.base.lazynumpy import np
from iatools.base.sortedarrays import BATCH, as_int64, dump_arrays, load_arrays, places_in_saved

#: Records added wait, unmerged, until they are at least this many
#: (``KeyMap._wait``).
_MERGE_AFTER = 1 << 20
#: Numbers summed at a time by ``KeyMap.column_total``.
_GROUP = 1 << 16
#: Numbers below this in size add up, a group of them, within 63 bits.
_SAFE_TO_SUM = (1 << 63) // _GROUP


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
                lambda reader: load_arrays(reader, self.width + 1, like))
        return getattr(self, name)

    def add(self, hashes, *columns):
        """Add a record per hash, the numbers being the ``columns``' items."""
        self.added += len(hashes)
        if len(hashes):
            self._wait([as_int64(hashes), *map(as_int64, columns)])

    def _wait(self, records):
        """Hold records (a list: hashes, then each column) until a lookup,
        or until they are a million and half as many as those merged: a
        bound on what they hold twice, and on what a merge copies."""
        self._fresh.append(records)
        self._waiting += len(records[0])
        if self._waiting >= max(_MERGE_AFTER, (self.added - self._waiting) // 2):
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
        hashes = as_int64(hashes)
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
            found = without.contains_array(keys, ordered=True)
            if found.any():  # (else no copy, and the keys stay shared)
                self._keep(~found)
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
            kept = ~KeySet.of(list(without)).contains_array(hashes, ordered=True)
            hashes, numbers = hashes[kept], [column[kept] for column in numbers]
        keys = KeySet(salt)
        keys.adopt(hashes)
        return keys, TaggedKeys.of(hashes, *numbers)

    def hashes_and_column(self, n):
        """``hashes()`` and ``column(n)``, without the other numbers: read
        from the checkpoint while the records are still there and none was
        added since, the other columns passed over a batch at a time."""
        if self._in_checkpoint():
            return self._saved.peek(partial(_hashes_and_column, n, self.width))
        return self._settle(), self._columns[n]

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
                numbers = numbers[~without.contains_array(hashes[start:start + _GROUP], ordered=True)]
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
                       lambda writer: dump_arrays(writer, arrays))

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


def _taken(parts, n):
    """Item ``n`` of each list of ``parts``, joined in one array; each let go."""
    joined = np.concatenate([part[n] for part in parts])
    for part in parts:
        part[n] = None
    return joined


def _hashes_and_column(n, width, reader):
    """The hashes and column ``n`` of the records ``dump_arrays`` wrote."""
    size = int.from_bytes(reader.read(8), "little")
    arrays = []
    for array_number in range(width + 1):
        if array_number in (0, n + 1):
            arrays.append(np.frombuffer(reader.read(8 * size), np.int64))
        else:
            for start in range(0, size, BATCH):
                reader.read(8 * min(BATCH, size - start))
    return arrays


def _find_saved(hashes, width, reader):
    """``KeyMap._find`` of the records as ``dump_arrays`` wrote them,
    read a batch at a time: the hashes, then each column."""
    order = np.argsort(hashes)
    size, at = places_in_saved(reader, hashes[order])
    # Back in the order asked.
    at[order] = at.copy()
    columns = [np.zeros(len(at), np.int64) for _ in range(width)]
    for column in columns:
        for start in range(0, size, BATCH):
            values = np.frombuffer(reader.read(8 * min(BATCH, size - start)), np.int64)
            here = (at >= start) & (at < start + len(values))
            column[here] = values[at[here] - start]
    return at >= 0, columns
