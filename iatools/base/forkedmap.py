"""Work shared by forked children, its results in order: ``ordered_map``.

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
"""

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
#: A result's length before it, or an error's (negative), then the bytes.
_HEADER = struct.Struct("<q")


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


def _children_for(count):
    """How many children to share ``count`` items: one a core (up to
    _MOST); none where a fork is unsafe or would not pay."""
    if count < 2 or not hasattr(os, "fork") or threading.active_count() > 1:
        return 0
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1)
    return min(cores, _MOST, count) if cores > 1 else 0


def _start(func, items, started):
    """Fork a child that sends ``func(item)`` for each of ``items``: its
    pid, and the file the parent reads its results from."""
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except (OSError, AttributeError):
        pass  # (a smaller pipe: more turns, the same results)
    child = os.fork()
    if child == 0:
        for _, results in started:
            results.close()
        os.close(read_end)
        _serve(func, items, write_end)
    os.close(write_end)
    return child, open(read_end, "rb")


def _serve(func, items, write_end):
    """A child: send ``func(item)`` for each of ``items``, then leave
    (never returns: no handler, buffer or ``finally`` of the parent's runs
    here)."""
    status = 1
    try:
        # Not the parent's stdin and stdout: a reader of its output must see
        # the end when the parent is gone, not when the children are too.
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        with open(write_end, "wb") as out:
            for item in items:
                try:
                    result = func(item)
                except Exception as exc:  # noqa: BLE001 -- raised by the parent
                    told = _pickled(exc)
                    out.write(_HEADER.pack(-len(told)) + told)
                    return
                out.write(_HEADER.pack(len(result)))
                out.write(result)
                out.flush()
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


def _received(results):
    """The next result a child sent, or its error raised."""
    header = results.read(_HEADER.size)
    size, = _HEADER.unpack(header) if len(header) == _HEADER.size else (None,)
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
