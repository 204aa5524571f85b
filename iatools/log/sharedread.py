"""A stretch of a log cut chunk by chunk, the long ones on every core:
``read_cut``.

A first reading, or one with a long tail after its checkpoint, is bound by
one interpreter running the regular expressions over each chunk and
hashing the keys (1.4 us a line for the completions, 2.6 for status).
The chunks are independent until they are folded into what the reader
keeps: so, past SHARE_OVER bytes, the log is split at line boundaries into
blocks of about BLOCK bytes, forked children (iatools.base.forkedmap) cut
each chunk of theirs into what the reader folds, and the reader folds what
they send in log order -- or parses in turn, with its true line numbers, a
chunk not of the writers' shape, so that bad lines are told as before.
The last block is left to the reading in turn, which reports a torn line.

A checkpoint's position holds the CRC-32 of everything before it: each
child gives its block's, and the reader joins them (iatools.base.crc).
"""

import os
import pickle
import zlib
from dataclasses import replace
from functools import partial

from iatools.base import errors, forkedmap
from iatools.base.crc import crc32_combine
from iatools.log.checkpoint import Position
from iatools.log.eventlog import line_bounds, read_chunks

SHARE_OVER = 64 << 20
BLOCK = 16 << 20


def read_cut(path, start, cut, fold, read_slow, *, end=None, until=None, report=True,
             share=True, before_fork=None):
    """Read the log at ``path`` from the Position ``start`` to the offset
    ``end`` (a line boundary; else its present end), or until past the
    offset ``until``: ``fold(cut(lines, data, base))`` for each chunk
    (``base``: its offset), in log order, or ``read_slow(first line number,
    data, base)`` where ``cut`` gave None (a chunk not of the writers'
    shape).  A long stretch is cut by forked children (with ``share``):
    see _read_shared.  ``report``: tell a torn last line.  The Position
    reached; an IatoolsError where the log ends short of ``end`` or
    ``until`` (bytes its caller read before: the log was cut back since,
    and what it learned from them would not be this log's)."""
    position = start
    if share:
        position = _read_shared(path, start, until if end is None else end, cut, fold,
                               read_slow, before_fork)
    if until is not None and position.offset >= until:
        return position
    for first, lines, data in read_chunks(path, report, position, end):
        what = cut(lines, data, position.offset)
        if what is None:
            read_slow(first, data, position.offset)
        else:
            fold(what)
        position = position.after(data, lines)
        if until is not None and position.offset >= until:
            break
    if position.offset < (end if end is not None else until or 0):
        raise errors.IatoolsError(f"{path} was cut short while being read")
    return position


def _read_shared(path, start, until, cut, fold, read_slow, before_fork=None):
    """Read the log at ``path`` from the Position ``start`` towards the
    offset ``until`` (or its present end): ``cut(lines, data, base)`` for
    each chunk in a child (None for a chunk not of the writers' shape;
    ``base``: its offset), then here, in log order, ``fold(what cut
    gave)``, or ``read_slow(first line number, data, base)`` where it gave
    None.  Only where there is enough to share and a fork pays; the
    Position reached (``start`` when nothing was read).  ``before_fork()``:
    what the children need read in first (a checkpoint section: the
    children would share its file offset)."""
    try:
        end = os.stat(path).st_size if until is None else until
    except OSError:  # (none yet, or not to be read: the reading in turn says)
        return start
    if end - start.offset < SHARE_OVER or not forkedmap.shares(2):
        return start
    bounds = line_bounds(path, start.offset, end, BLOCK) or []
    blocks = list(zip(bounds, bounds[1:]))
    if len(blocks) < 2:
        return start
    if before_fork is not None:
        before_fork()
    position = start
    for (first, last), sent in zip(blocks, forkedmap.ordered_map(
            partial(_cut_block, path, cut), blocks)):
        crc, chunks = pickle.loads(sent)
        for lines, size, what, data in chunks:
            if what is None:
                read_slow(position.line, data, position.offset)
            else:
                fold(what)
            position = Position(position.offset + size, position.line + lines, position.crc)
        position = replace(position, crc=crc32_combine(position.crc, crc, last - first))
    return position


def _cut_block(path, cut, block):
    """In a child: the CRC-32 of the whole lines from offset to offset
    ``block``, and (lines, bytes, what ``cut`` gave, and where it gave None
    the bytes themselves) for each chunk of them, pickled."""
    start, end = block
    crc, chunks, offset = 0, [], start
    for _, lines, data in read_chunks(path, False, Position(start), end):
        crc = zlib.crc32(data, crc)
        what = cut(lines, data, offset)
        chunks.append((lines, len(data), what, data if what is None else None))
        offset += len(data)
    if offset != end:
        raise errors.IatoolsError(f"{path} was cut short while being read")
    return pickle.dumps((crc, chunks), pickle.HIGHEST_PROTOCOL)
