"""Deterministic file bytes, served without generating anything per request.

A file's bytes are a pseudo-random *tile* (SHAKE-128 of the file's key)
repeated up to the file's size.  Tiles are a little over 1 MiB and of odd,
per-file lengths, so no chunk size a client uses ever lines up with them and
a misplaced chunk shows up in the md5.  Files up to a tile's length are just
their tile.
"""

import functools
import hashlib
import threading
import zlib

TILE_BASE = 1 << 20
#: Above this size the metadata lists only md5, as computing sha1/crc32 too
#: would slow the first metadata request of a big item for no test's benefit.
FULL_DIGEST_LIMIT = 16 << 20


@functools.lru_cache(maxsize=64)  # ~64 MiB at most; a tile is rebuilt in ~2 ms
def _tile(key, length):
    return hashlib.shake_128(key).digest(length)


class FileContent:
    """The bytes of one file, addressed by ``key`` (e.g. ``b"item/name"``)."""

    def __init__(self, key, size):
        self.key = key
        self.size = size
        seed = hashlib.sha256(key).digest()
        period = TILE_BASE + 1 + 2 * (int.from_bytes(seed[:2], "big") % 2048)
        self.tile_length = min(size, period)
        self._md5 = None
        self._sha1_crc32 = None
        self._lock = threading.Lock()

    def tile(self):
        return _tile(self.key, self.tile_length)

    def chunks(self, start, end, chunk_size):
        """Memoryviews covering bytes ``start`` to ``end`` (exclusive)."""
        tile = memoryview(self.tile())
        position = start
        while position < end:
            offset = position % self.tile_length
            length = min(chunk_size, self.tile_length - offset, end - position)
            yield tile[offset:offset + length]
            position += length

    def read(self, start=0, end=None):
        end = self.size if end is None else end
        return b"".join(self.chunks(start, end, 1 << 20))

    def md5(self):
        """The md5 of the whole file, computed once."""
        with self._lock:
            if self._md5 is None:
                self._md5 = self._hash_all(hashlib.md5()).hexdigest()
            return self._md5

    def digests(self):
        """``{"md5", "sha1", "crc32"}`` as archive.org lists them (md5 only
        above ``FULL_DIGEST_LIMIT``), computed once."""
        md5 = self.md5()
        if self.size > FULL_DIGEST_LIMIT:
            return {"md5": md5}
        with self._lock:
            if self._sha1_crc32 is None:
                crc32 = _Crc32()
                sha1 = self._hash_all(hashlib.sha1(), crc32).hexdigest()
                self._sha1_crc32 = (sha1, f"{crc32.value:08x}")
            sha1, crc32 = self._sha1_crc32
        return {"md5": md5, "sha1": sha1, "crc32": crc32}

    def _hash_all(self, *hashers):
        for chunk in self.chunks(0, self.size, 1 << 20):
            for hasher in hashers:
                hasher.update(chunk)
        return hashers[0]


class _Crc32:
    """zlib.crc32 behind the hashlib ``update`` interface."""

    def __init__(self):
        self.value = 0

    def update(self, data):
        self.value = zlib.crc32(data, self.value)
