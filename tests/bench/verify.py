"""A fast wrong answer is a failure: every file a contender was asked for
must be on disk with the md5 the emulator serves."""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

CHUNK = 1 << 20


def expected_files(catalog, identifiers, names=None):
    """{"ID/NAME": md5} of the catalog files of ``identifiers`` (and, when
    given, only those whose name is in ``names``)."""
    wanted = set(identifiers)
    return {f"{f['id']}/{f['name']}": f["md5"] for f in catalog
            if f["id"] in wanted and (names is None or f["name"] in names)}


def wrong_files(root, expected):
    """The expected paths below ``root`` that are missing or have another md5
    (hashlib releases the GIL on big buffers: big files hash in parallel)."""
    paths = sorted(expected)
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        actual = pool.map(_md5_or_none, (os.path.join(root, p) for p in paths))
        return [p for p, md5 in zip(paths, actual) if md5 != expected[p]]


def _md5_or_none(path):
    try:
        with open(path, "rb") as f:
            md5 = hashlib.md5()
            while chunk := f.read(CHUNK):
                md5.update(chunk)
            return md5.hexdigest()
    except OSError:
        return None
