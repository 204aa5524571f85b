"""Sorted arrays of distinct 64-bit hashes, the stuff of KeySet and KeyMap:
merged, looked up, and written to and read from a checkpoint
(iatools.log.checkpoint) a batch at a time, so that no step holds a second
copy of millions of them."""

from iatools.base.lazynumpy import np

#: Hashes looked up, written to or read from a checkpoint at a time: a
#: bounded copy.
BATCH = 1 << 20


def as_int64(numbers):
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


def distinct(ordered):
    """A sorted array without its repeated values."""
    if len(ordered) < 2:
        return ordered
    first = np.empty(len(ordered), bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered if first.all() else ordered[first]


def union(one, other):
    """The values of two sorted arrays of distinct values, in one.  Those of
    the smaller that the larger holds are left out first, and a stable sort
    (timsort) of the two runs laid end to end only merges them: the result,
    and no more, is the memory it takes."""
    if len(other) > len(one):
        one, other = other, one
    if not len(other):
        return one
    joined = np.concatenate([one, other[~found_sorted(one, other)]])
    joined.sort(kind="stable")
    return joined


def found_unsorted(keys, hashes):
    """``found_sorted`` of an array of queries in any order."""
    order = np.argsort(hashes)
    found = np.empty(len(hashes), bool)
    found[order] = found_sorted(keys, hashes[order])
    return found


def found_sorted(keys, ordered):
    """For a sorted array of queries, is each in the sorted array ``keys``?
    A batch at a time: a bounded copy."""
    found = np.empty(len(ordered), bool)
    for start in range(0, len(ordered), BATCH):
        batch = ordered[start:start + BATCH]
        at = np.searchsorted(keys, batch)
        np.minimum(at, len(keys) - 1, out=at)
        np.equal(keys[at], batch, out=found[start:start + BATCH])
    return found


def _dump_array(writer, values):
    for start in range(0, len(values), BATCH):
        writer.write(memoryview(values[start:start + BATCH]).cast("B"))


def dump_merged(writer, largest, others):
    """The values of two sorted arrays of distinct values, none in both,
    as ``_dump_array`` would write their union: each batch of ``largest``
    with the values of ``others`` below the next batch."""
    writer.write((len(largest) + len(others)).to_bytes(8, "little"))
    taken = 0
    for start in range(0, len(largest), BATCH):
        batch, end = largest[start:start + BATCH], start + BATCH
        upto = int(np.searchsorted(others, largest[end])) if end < len(largest) else len(others)
        if upto > taken:
            batch = np.concatenate([batch, others[taken:upto]])
            batch.sort(kind="stable")  # (two sorted runs: merged)
            taken = upto
        writer.write(memoryview(batch).cast("B"))
    _dump_array(writer, others[taken:])


def among(ordered, few):
    """For a sorted array of distinct values, is each among the sorted
    array ``few``?  Each of the few is looked for among the many (where
    ``found_sorted`` looks for each of many among a set): a search as
    long as the few."""
    marked = np.zeros(len(ordered), bool)
    if len(few) and len(ordered):
        at = np.searchsorted(ordered, few)
        present = ordered.take(at, mode="clip") == few
        marked[at[present]] = True
    return marked


def dump_arrays(writer, arrays):
    """The number of values, then each array: for load_arrays."""
    writer.write(len(arrays[0]).to_bytes(8, "little"))
    for values in arrays:
        _dump_array(writer, np.ascontiguousarray(values, np.int64))


def load_arrays(reader, count, like=None):
    """The arrays ``dump_arrays`` wrote; the first one is the sorted array
    ``like`` when it holds the same values (compared a batch at a time:
    never read into an array of its own)."""
    size = int.from_bytes(reader.read(8), "little")
    first = _read_like(reader, size, like) if like is not None and len(like) == size else None
    if first is None:
        first = np.frombuffer(reader.read(8 * size), np.int64)
    return [first] + [np.frombuffer(reader.read(8 * size), np.int64) for _ in range(count - 1)]


def _read_like(reader, size, like):
    """``like``, if the next ``size`` values are its values; else those
    values, read whole."""
    for start in range(0, size, BATCH):
        batch = np.frombuffer(reader.read(8 * min(BATCH, size - start)), np.int64)
        if not np.array_equal(batch, like[start:start + BATCH]):
            rest = np.frombuffer(reader.read(8 * (size - start - len(batch))), np.int64)
            return np.concatenate([like[:start], batch, rest])
    return like


def places_in_saved(reader, asked):
    """The number of sorted hashes that ``dump_arrays`` wrote first, and
    where each of the sorted array ``asked`` is among them (-1 where it is
    not), read a batch at a time."""
    size = int.from_bytes(reader.read(8), "little")
    at = np.full(len(asked), -1, np.int64)
    for start in range(0, size, BATCH):
        keys = np.frombuffer(reader.read(8 * min(BATCH, size - start)), np.int64)
        place = np.searchsorted(keys, asked)
        hit = keys.take(place, mode="clip") == asked
        at[hit] = start + place[hit]
    return size, at
