"""The 64-bit hash of a job key, computed for a whole list of keys at once.

A checkpoint keeps the hashes, so they must be the same from process to
process (Python's ``hash`` of bytes is seeded afresh in each), and a key
set holds millions: hashing is most of what a reading of a log of queued
jobs does.  So the keys of a list are laid out side by side in a numpy
array, 8 bytes to a word, and each column of words is folded into the
hashes at once: about 120 ns a key, where Python's ``hash`` of a tuple
(the salt, the CRC-32 and the number each key reads as) took 200.

The hash: the salt of the set mixed with the key's length, then each
8-byte word of the key (little-endian, the last one padded with zero
bytes) mixed in by splitmix64's finalizer, a bijection of 64-bit values
whose every output bit depends on every input bit.  The salt is random for
each set: a collision does not outlive the set and its checkpoint.
``hash_one`` computes the same for one key, in Python, for the readers
that parse line by line.
"""

from iatools.base.lazynumpy import np

_GOLDEN = 0x9e3779b97f4a7c15
_MASK = (1 << 64) - 1
_MULTIPLIER = 0xff51afd7ed558ccd


def hash_all(keys, salt):
    """The hashes of a list of keys (bytes), an int64 numpy array."""
    lengths = np.fromiter(map(len, keys), np.uint64, len(keys))
    hashes = (lengths * np.uint64(_GOLDEN)) ^ np.uint64(salt)
    width = -(-int(lengths.max(initial=0)) // 8)
    if width:
        words = np.array(keys, f"S{8 * width}").view("<u8").reshape(len(keys), width)
        word_counts = (lengths + np.uint64(7)) >> np.uint64(3)
        for column in range(width):
            # A key of fewer words is padded with zero words: not its own.
            hashes = np.where(word_counts > column, _fold(hashes, words[:, column]), hashes)
    return mix(hashes).view(np.int64)


def hash_one(key, salt):
    """``hash_all`` of one key, as an int."""
    value = (len(key) * _GOLDEN & _MASK) ^ salt
    words = int.from_bytes(key, "little")
    for _ in range(0, len(key), 8):
        value = (value ^ words & _MASK) * _MULTIPLIER & _MASK
        value ^= value >> 29
        words >>= 64
    value = _mix_int(value)
    return value - (1 << 64) if value >> 63 else value


def _fold(hashes, words):
    """The hashes with a word of each key folded in: a bijection of the
    hash for each word, and of the word for each hash."""
    hashes = (hashes ^ words) * np.uint64(_MULTIPLIER)
    return hashes ^ (hashes >> np.uint64(29))


def mix(values):
    """splitmix64's finalizer of each value of a uint64 array."""
    values = values ^ (values >> np.uint64(30))
    values *= np.uint64(0xbf58476d1ce4e5b9)
    values ^= values >> np.uint64(27)
    values *= np.uint64(0x94d049bb133111eb)
    values ^= values >> np.uint64(31)
    return values


def _mix_int(value):
    value ^= value >> 30
    value = value * 0xbf58476d1ce4e5b9 & _MASK
    value ^= value >> 27
    value = value * 0x94d049bb133111eb & _MASK
    return value ^ value >> 31
