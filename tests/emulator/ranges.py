"""HTTP Range and If-Range for the storage hosts (RFC 9110 §14)."""

import re

_SINGLE_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class Unsatisfiable(Exception):
    """Answer 416 with ``Content-Range: bytes */SIZE``."""


def requested_range(range_header, if_range, size, etag, last_modified):
    """(start, end exclusive) to send as 206, or None for the whole file (200).

    Multiple ranges and malformed headers are ignored (a full 200 is a valid
    answer to both); an If-Range that names another version also gets 200."""
    if not range_header:
        return None
    if if_range and if_range.strip() not in (etag, last_modified):
        return None
    match = _SINGLE_RANGE.fullmatch(range_header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # suffix range: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise Unsatisfiable()
        return max(0, size - length), size
    start = int(first)
    if last != "" and int(last) < start:
        return None  # not a valid range at all, so ignored
    if start >= size:
        raise Unsatisfiable()
    return start, size if last == "" else min(size, int(last) + 1)
