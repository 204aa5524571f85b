"""Compact sets of job keys: their 64-bit hashes, and numbers kept with them.

Keys are the bytes that iatools.contract.linegrammar takes out of a line (``KEY``)
or makes of a parsed job (``key_bytes``).

A ``KeySet`` holds hashes of such keys in 10 to 16 bytes each where a
Python set of ints takes about 75, and adds and tests a list of hashes in C
(through ``map``), at about a microsecond per hash on a small machine: a
set is 2 to 3 times faster, but 7 million keys would take 550 MB.
"""

import os
import struct
from array import array
from collections import deque
from functools import partial
from itertools import accumulate, compress, repeat
from operator import and_, contains, iadd, not_
from zlib import crc32

_PACK = struct.Struct("=q").pack
_BUCKET_BITS = 16
_MASK = (1 << _BUCKET_BITS) - 1


class _Buckets:
    """65,536 buckets of packed records, the low 16 bits of a key hash
    choosing one.  Saved in a section of a checkpoint
    (iatools.log.checkpoint), read back at their first use: a reading
    that looks no key up (a log with no events after its checkpoint)
    leaves them on disk, tens of megabytes for millions of keys."""

    _record_size = 8

    def __init__(self, saved=None):
        if saved is None:
            self._buckets = [bytearray() for _ in range(1 << _BUCKET_BITS)]
        else:
            self._saved = saved

    def __getattr__(self, name):
        # Called only while ``_buckets`` is still in the checkpoint.
        saved = self.__dict__.pop("_saved", None)
        if name != "_buckets" or saved is None:
            raise AttributeError(name)
        self._buckets = saved.load(partial(_load_buckets, record_size=self._record_size))
        return self._buckets

    def _dump_buckets(self, writer):
        buckets = self._buckets
        writer.section(8 * len(buckets) + sum(map(len, buckets)),
                       partial(_dump_buckets, buckets=buckets))


class KeySet(_Buckets):
    """Hashes of keys (``hash_keys``), in 65,536 buckets (by the low 16
    bits) of packed 8-byte values.  A lookup is a byte search in one bucket: about a
    kilobyte for ten million keys.  The search may in principle match 8 bytes straddling two
    neighbours; for random 64-bit hashes that is about 2^-54 per lookup,
    far below the chance of two keys sharing a hash (iatools(7), KEY HASHES).
    """

    def __init__(self, salt=None, saved=None):
        super().__init__(saved)
        self.added = 0
        self.salt = int.from_bytes(os.urandom(8), "big") if salt is None else salt

    def hash_keys(self, keys):
        """The 64-bit hashes of a list of keys, computed in C.  They stay the
        same from process to process (a checkpoint keeps them), which
        Python's ``hash`` of bytes does not: it is seeded afresh in each.
        The ``hash`` of a tuple of ints is not seeded; this one holds the
        set's random salt (a collision does not outlive the set and its
        checkpoint), the key's CRC-32, and the key read as a number (hashed
        modulo 2^61 - 1): each of the last two covers the weakness of the
        other (CRC-32 has 32 bits; the number's hash misses two bytes 61
        places apart trading places)."""
        return list(map(hash, zip(repeat(self.salt), map(crc32, keys),
                                  map(int.from_bytes, keys, repeat("big")))))

    def hash_key(self, key):
        return hash((self.salt, crc32(key), int.from_bytes(key, "big")))

    def _buckets_of(self, hashes):
        return map(self._buckets.__getitem__, map(and_, hashes, repeat(_MASK)))

    def add(self, hashes):
        """Add a list of hashes; one already present is held twice."""
        # map() drives C functions only: bucket += packed hash, per hash.
        deque(map(iadd, self._buckets_of(hashes), map(_PACK, hashes)), maxlen=0)
        self.added += len(hashes)

    def add_new(self, hashes):
        """Add the hashes not yet present; return the list of those added,
        each once, in order of first appearance."""
        unique = list(dict.fromkeys(hashes))
        fresh = [h for h, present in zip(unique, self.contains_each(unique)) if not present]
        self.add(fresh)
        return fresh

    def contains_each(self, hashes):
        """An iterator of booleans: is each hash of the list present?"""
        return map(contains, self._buckets_of(hashes), map(_PACK, hashes))

    def __contains__(self, h):
        return _PACK(h) in self._buckets[h & _MASK]

    def discard(self, hashes):
        """Remove every copy of each hash: a byte search and a rewrite of
        its bucket per hash, for the few keys that stop being completed."""
        for h in hashes:
            bucket = self._buckets[h & _MASK]
            if _PACK(h) in bucket:
                kept = array("q", bucket)
                bucket[:] = array("q", [v for v in kept if v != h]).tobytes()
                self.added -= len(kept) - len(bucket) // 8

    def compact(self, without=None):
        """Drop the hashes held twice, and those in the KeySet ``without``."""
        others = repeat(b"") if without is None else without._buckets
        for bucket, other in zip(self._buckets, others):
            hashes = set(memoryview(bucket).cast("q")).difference(memoryview(other).cast("q"))
            bucket[:] = array("q", hashes).tobytes()
        self.added = sum(map(len, self._buckets)) // 8

    def dump(self, writer):
        """Write the set for ``load``: the salt, the number of hashes, then
        the buckets (a section)."""
        writer.write(self.salt.to_bytes(8, "big") + self.added.to_bytes(8, "big"))
        self._dump_buckets(writer)

    def dumped_size(self):
        return 24 + 8 * (1 << _BUCKET_BITS) + 8 * self.added

    @classmethod
    def load(cls, reader):
        salt, added = int.from_bytes(reader.read(8), "big"), int.from_bytes(reader.read(8), "big")
        keys = cls(salt, reader.section())
        keys.added = added
        return keys

    def __bool__(self):
        return self.added > 0

    def hashes(self):
        """Every hash held (once per time it was added), as an array."""
        return array("q", b"".join(self._buckets))

    def count_with(self, other):
        """The number of distinct hashes here, and in the union with other."""
        mine = union = 0
        for a, b in zip(self._buckets, other._buckets):
            hashes = set(memoryview(a).cast("q"))
            mine += len(hashes)
            hashes.update(memoryview(b).cast("q"))
            union += len(hashes)
        return mine, union


class KeyMap(_Buckets):
    """For each key hash, the numbers (``width`` of them) added with it
    last: records of the hash and the numbers, packed in 65,536 buckets as
    in a KeySet, the latest of a key at the end of its bucket.  Looking a
    key up is a search from the end of one bucket, in C."""

    def __init__(self, width, saved=None):
        self.width = width
        self._record = struct.Struct(f"={width + 1}q")
        self._record_size = self._record.size
        super().__init__(saved)
        self.added = 0

    def add(self, hashes, *columns):
        """Add a record per hash, the numbers being the ``columns``' items."""
        buckets = map(self._buckets.__getitem__, map(and_, hashes, repeat(_MASK)))
        deque(map(iadd, buckets, map(self._record.pack, hashes, *columns)), maxlen=0)
        self.added += len(hashes)

    def latest(self, hashes):
        """The numbers last added with each hash (a tuple), or None.  (A
        match straddling two records is as unlikely as in a KeySet, and
        taken as no record.)"""
        buckets = list(map(self._buckets.__getitem__, map(and_, hashes, repeat(_MASK))))
        found = list(map(bytearray.rfind, buckets, map(_PACK, hashes)))
        return [None if at < 0 or at % self._record.size
                else self._record.unpack_from(bucket, at)[1:]
                for bucket, at in zip(buckets, found)]

    def compact(self, without=None):
        """Keep only the latest record of each hash, and none of the hashes
        in the KeySet ``without``."""
        width = self.width + 1
        for bucket in self._buckets:
            records = array("q", bucket)
            hashes = records[::width].tolist()
            dropped = [] if without is None else list(without.contains_each(hashes))
            if len(set(hashes)) == len(hashes) and not any(dropped):
                continue  # as most are: nothing to do, in C
            # The index of the latest record of each hash, in order.
            kept = sorted(dict(zip(hashes, range(len(hashes)))).values())
            if dropped:
                kept = list(compress(kept, map(not_, map(dropped.__getitem__, kept))))
            compacted = array("q", bytes(8 * width * len(kept)))
            for n in range(width):
                compacted[n::width] = array("q", map(records[n::width].__getitem__, kept))
            bucket[:] = compacted.tobytes()
        self.added = sum(map(len, self._buckets)) // self._record.size

    def hashes(self):
        """The hash of every record, in bucket order, as an array."""
        return array("q", b"".join(self._buckets))[::self.width + 1]

    def update(self, later):
        """Add the records of the KeyMap ``later`` (of the same width) after
        those here: a bucket at a time, in C."""
        deque(map(iadd, self._buckets, later._buckets), maxlen=0)
        self.added += later.added

    def keys_and_tags(self, salt, columns, without=frozenset()):
        """A KeySet (of ``salt``) of the hashes here, and the TaggedKeys of
        the numbers at ``columns`` (0: the first) of their latest record --
        of a compacted map, built a bucket at a time, in C (adding hash by
        hash costs a microsecond each); the hashes in the set ``without``
        left out."""
        width = self.width + 1
        keys, tags = KeySet(salt), TaggedKeys()
        for bucket, key_bucket, tag_bucket in zip(self._buckets, keys._buckets, tags._buckets):
            records = array("q", bucket)
            hashes = records[::width]
            tagged = _tags(hashes, *(records[1 + n::width] for n in columns))
            if without:
                kept = list(map(not_, map(without.__contains__, hashes)))
                hashes, tagged = array("q", compress(hashes, kept)), compress(tagged, kept)
            key_bucket += hashes
            tag_bucket += array("q", tagged)
        keys.added = sum(map(len, keys._buckets)) // 8
        return keys, tags

    def latest_columns(self, without=None):
        """For each bucket: the list of the hashes in it (each once, not
        those in the KeySet ``without``) and a list of each of the numbers
        last added with them, in the same order."""
        width = self.width + 1
        for bucket in self._buckets:
            records = array("q", bucket)
            latest = dict(zip(records[::width], zip(*(records[n::width]
                                                      for n in range(1, width)))))
            hashes = list(latest)
            numbers = list(latest.values())
            if without is not None:
                kept = list(map(not_, without.contains_each(hashes)))
                hashes, numbers = list(compress(hashes, kept)), list(compress(numbers, kept))
            yield [hashes, *(map(list, zip(*numbers)) if numbers else [[]] * self.width)]

    def dump(self, writer):
        writer.write(self.added.to_bytes(8, "big"))
        self._dump_buckets(writer)

    def dumped_size(self):
        return 16 + 8 * (1 << _BUCKET_BITS) + self._record.size * self.added

    @classmethod
    def load(cls, reader, width):
        added = int.from_bytes(reader.read(8), "big")
        keys = cls(width, reader.section())
        keys.added = added
        return keys


class TaggedKeys(_Buckets):
    """A 64-bit tag of some numbers (say, an item's version) for each of a
    set of key hashes, in buckets chosen by the key hash as in a KeySet: "does key h
    have tag t" is one byte search in a small bucket, in C, with no record
    unpacked.  (Built by ``KeyMap.keys_and_tags``.)"""

    def has_each(self, hashes, *numbers):
        """An iterator of booleans: is each key hash here, tagged with the
        numbers given with it (the ``numbers``' items)?"""
        buckets = map(self._buckets.__getitem__, map(and_, hashes, repeat(_MASK)))
        return map(contains, buckets, map(_PACK, _tags(hashes, *numbers)))

    dump = _Buckets._dump_buckets

    def dumped_size(self):
        return 8 + 8 * len(self._buckets) + sum(map(len, self._buckets))

    @classmethod
    def load(cls, reader):
        return cls(reader.section())


def _tags(hashes, *numbers):
    """The tag of each key hash and its numbers: the hash of their tuple (a
    hash of ints is the same in every process)."""
    return map(hash, zip(hashes, *numbers))


#: Buckets written or read at a time: a few calls instead of 65,536, and a
#: bounded copy.
_BUCKETS_AT_ONCE = 1024


def _dump_buckets(writer, buckets):
    """Write the sizes of the buckets, then the buckets, for _load_buckets."""
    writer.write(array("Q", map(len, buckets)).tobytes())
    for start in range(0, len(buckets), _BUCKETS_AT_ONCE):
        writer.write(b"".join(buckets[start:start + _BUCKETS_AT_ONCE]))


def _load_buckets(reader, record_size):
    sizes = array("Q", reader.read(8 << _BUCKET_BITS))
    if any(size % record_size for size in sizes):
        raise ValueError("not a key set")
    buckets = []
    for start in range(0, len(sizes), _BUCKETS_AT_ONCE):
        data = memoryview(reader.read(sum(sizes[start:start + _BUCKETS_AT_ONCE])))
        ends = list(accumulate(sizes[start:start + _BUCKETS_AT_ONCE]))
        buckets += map(bytearray, map(data.__getitem__, map(slice, [0] + ends[:-1], ends)))
    return buckets
