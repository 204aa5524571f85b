"""Shards: split jobs among N machines without a coordinator.

A job belongs to shard ``1 + H(id) mod N``, where H is the first 8 bytes
of the BLAKE2b digest of the identifier's UTF-8 bytes, read as a big-endian
number.  That is the same on every machine, Python version and run
(Python's own ``hash`` is randomised per process, so it is never used), and
it depends on the item alone: every file of an item lands in one shard.
"""

import argparse
import hashlib
import re
from dataclasses import dataclass

_SHARD = re.compile(r"([0-9]+)/([0-9]+)")


def item_hash(identifier):
    """The stable 64-bit hash of an item identifier (see iatools(7))."""
    digest = hashlib.blake2b(identifier.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(identifier, count):
    """The shard (1 to ``count``) that the item ``identifier`` belongs to."""
    return item_hash(identifier) % count + 1


@dataclass(frozen=True)
class Shard:
    """Shard ``number`` of ``count`` (K/N, K counted from 1)."""

    number: int
    count: int

    def holds(self, identifier):
        return shard_of(identifier, self.count) == self.number

    def __str__(self):
        return f"{self.number}/{self.count}"


def shard_argument(text):
    """argparse type for K/N: whole numbers with 1 <= K <= N."""
    match = _SHARD.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid shard {text!r} (use K/N, e.g. 2/3)")
    shard = Shard(int(match.group(1)), int(match.group(2)))
    if not 1 <= shard.number <= shard.count:
        raise argparse.ArgumentTypeError(
            f"invalid shard {text!r} (K/N needs 1 <= K <= N: shards are counted from 1)")
    return shard
