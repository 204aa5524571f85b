"""Work shared by forked children, its results in order: ``ordered_map``,
and ``computed_ahead`` for a stream.

Printing the jobs of a log of millions (``ia-joblog pending``,
``completed``) is bound by one interpreter cutting each line out with
regular expressions: 0.5 to 1 us a line, 7 s for seven million
completions.  The lines split by batch: a child a core (two here) takes
its share of the batches, each child every n-th, and sends each result
back whole through a pipe; the parent reads them in turn and yields them
in order.  The parent computes nothing: all it does is hand the results
on, so the cores share the work evenly whatever the output costs (a
parent that took batches too would have the writing on top of them).  A
child waits, a pipe-full ahead, for the parent to read.

Only where a fork is safe and pays: a process with no other thread (a
fork would inherit their locks held), two cores or more, two batches or
more.  Elsewhere the batches are done in turn, the same results.

A child never outlives its use: it leaves when its batches are sent, at
its next write once the parent is gone (the pipe breaks), or when the
parent stops early (a closed stdout, a signal), which kills it.  An error
in a child is raised again by the parent, the same class with the same
arguments, as the work done in turn would raise it; a child that died
without a word (killed) is an IatoolsError, never a result cut short.

``computed_ahead`` splits a stream between two stages instead: one child
reads the input itself (skip's jobs on stdin) and does the first stage of
each chunk (cutting the keys out and hashing them), a pipe-full ahead of
the parent, which does the rest (looking them up, writing) in order.
"""

import ctypes
import fcntl
import os
import pickle
import signal
import struct
import threading

from iatools.base import errors

#: Children at most.
_MOST = 4
#: The pipe a child sends through holds this much (Linux's most, unless
#: raised: /proc/sys/fs/pipe-max-size): fewer turns between the two.
_PIPE_SIZE = 1 << 20
#: A result's length before it, or an error's (negative), then the bytes;
#: after the last result, _END.
_HEADER = struct.Struct("<q")
_END = -(1 << 62)
_PR_SET_PDEATHSIG = 1


def ordered_map(func, items):
    """Yield ``func(item)`` (bytes) for each of the sequence ``items``, in
    order: computed by forked children where that pays."""
    children = _children_for(len(items))
    if not children:
        yield from map(func, items)
        return
    started = []  # (pid, the file of its results)
    received_all = False
    try:
        for first in range(children):
            started.append(_start(func, items[first::children], started))
        for index in range(len(items)):
            yield _received(started[index % children][1])
        received_all = True
    finally:
        _end(started, received_all)


def computed_ahead(func, items):
    """Yield ``func(item)`` (anything pickle takes) for each of the iterable
    ``items``, in order: computed by one forked child, which takes the items
    itself (it reads the input; the parent must not), where that pays."""
    if not _children_for(2):
        yield from map(func, items)
        return
    started = [_start(lambda item: pickle.dumps(func(item), pickle.HIGHEST_PROTOCOL),
                      items, [], keep_stdin=True)]
    received_all = False
    try:
        while (result := _received(started[0][1], at_end=True)) is not None:
            yield pickle.loads(result)
        received_all = True
    finally:
        _end(started, received_all)


def shares(count):
    """Would ``ordered_map`` share ``count`` items out between children?"""
    return _children_for(count) > 0


def _children_for(count):
    """How many children to share ``count`` items: one a core (up to
    _MOST); none where a fork is unsafe or would not pay."""
    if count < 2 or not hasattr(os, "fork") or threading.active_count() > 1:
        return 0
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1)
    return min(cores, _MOST, count) if cores > 1 else 0


def _start(func, items, started, keep_stdin=False):
    """Fork a child that sends ``func(item)`` for each of ``items``, then
    the end: its pid, and the file the parent reads its results from."""
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except (OSError, AttributeError):
        pass  # (a smaller pipe: more turns, the same results)
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        _die_with(parent)
        for _, results in started:
            results.close()
        os.close(read_end)
        _serve(func, items, write_end, keep_stdin)
    os.close(write_end)
    return child, open(read_end, "rb")


def _die_with(parent):
    """Have the kernel kill this child when its parent dies (Linux): a
    child that reads the input may wait on it for ever, and it holds a copy
    of every descriptor the parent had -- the log's, with its lock, if the
    parent died holding it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # (another system: the next write to the parent ends it)
    if os.getppid() != parent:  # gone before that
        os._exit(1)


def _serve(func, items, write_end, keep_stdin):
    """A child: send ``func(item)`` for each of ``items``, then the end, and
    leave (never returns: no handler, buffer or ``finally`` of the parent's
    runs here).  ``keep_stdin``: the items are read from it."""
    status = 1
    try:
        # Not the parent's stdout: a reader of its output must see the end
        # when the parent is gone, not when the children are too.  (Nor its
        # stdin, unless the items come from there.)
        devnull = os.open(os.devnull, os.O_RDWR)
        if not keep_stdin:
            os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        with open(write_end, "wb") as out:
            try:
                # (The items too may fail: a read of the input.)
                for result in map(func, items):
                    out.write(_HEADER.pack(len(result)))
                    out.write(result)
                    out.flush()
            except Exception as exc:  # noqa: BLE001 -- raised by the parent
                told = _pickled(exc)
                out.write(_HEADER.pack(-len(told)) + told)
                return
            out.write(_HEADER.pack(_END))
        status = 0
    except BaseException:  # noqa: BLE001 -- a broken pipe, a signal: the parent decides
        pass
    finally:
        os._exit(status)


def _pickled(exc):
    """An exception as the parent raises it again: the same class and
    arguments (an OSError with its file and reason, as on one core), or an
    IatoolsError that names it where it cannot be pickled."""
    try:
        return pickle.dumps(exc)
    except Exception:  # noqa: BLE001 -- any failure to pickle
        return pickle.dumps(errors.IatoolsError(f"{type(exc).__name__}: {exc}"))


def _received(results, at_end=False):
    """The next result a child sent, or its error raised; (``at_end``)
    None when it sent the end."""
    header = results.read(_HEADER.size)
    size, = _HEADER.unpack(header) if len(header) == _HEADER.size else (None,)
    if size == _END and at_end:
        return None
    data = results.read(abs(size)) if size is not None else b""
    if size is None or len(data) < abs(size):
        raise errors.IatoolsError("a process sharing the work ended without its results")
    if size < 0:
        raise pickle.loads(data)
    return data


def _end(started, received_all):
    """Reap the children, which leave once they sent all; killed first when
    the parent stopped before reading all they send."""
    for child, results in started:
        if not received_all:
            os.kill(child, signal.SIGKILL)
        results.close()
        os.waitpid(child, 0)
