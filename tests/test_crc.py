"""iatools.base.crc: the CRC-32 of two stretches joined, as zlib computes
it over the whole."""

import random
import zlib

import pytest

from iatools.base.crc import crc32_combine


@pytest.mark.parametrize("second_length", [0, 1, 2, 3, 7, 8, 255, 256, 4096, 1 << 20])
def test_crc32_combine_is_the_crc_of_the_whole(second_length):
    chosen = random.Random(second_length)
    for first_length in (0, 1, 13, 1000):
        first = chosen.randbytes(first_length)
        second = chosen.randbytes(second_length)
        assert (crc32_combine(zlib.crc32(first), zlib.crc32(second), len(second))
                == zlib.crc32(first + second))


def test_crc32_combine_past_four_gigabytes():
    """A log's CRC-32 is combined block by block, past 2^32 bytes too: the
    powers of x wrap around their table there."""
    zeros = bytes(1 << 20)
    whole, crc_of_zeros = zlib.crc32(b"log"), 0
    for _ in range(4097):  # 4 GiB and 1 MiB
        whole = zlib.crc32(zeros, whole)
        crc_of_zeros = zlib.crc32(zeros, crc_of_zeros)
    assert crc32_combine(zlib.crc32(b"log"), crc_of_zeros, 4097 << 20) == whole
