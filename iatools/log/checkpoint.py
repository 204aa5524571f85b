"""Checkpoints: what a reader learned from the beginning of a log, kept
beside it, so that the next reader parses only what was appended since.

Parsing costs about 3 microseconds a line: a minute or more for a log of
tens of millions of events.  Checking that the log still begins with the
bytes a checkpoint covers costs a CRC-32 over a memory map: 2 to 9 s for
4 GB, as much as a reading from a checkpoint may take.  So the writers
(iatools.log.eventlog) leave a stamp beside the log after each append: the
log's device, inode, size and change time, and an epoch that a writer
renews when the log is not as the last stamp left it (someone else wrote to
it).  A checkpoint saved while the stamp held notes its epoch; while the
stamp still holds with that epoch, no byte of the log was changed but by
iatools' appends, and the checkpoint is trusted without a reading.  Any
other checkpoint is trusted only when the log is at least as long as the
part it covers and that part's CRC-32 is unchanged; a log replaced, cut
short or edited, and a checkpoint damaged or from another version, are
ignored and the log is read from its start.  A checkpoint is a cache:
deleting one costs time, never correctness (iatools(7), CHECKPOINTS).

The file: ``MAGIC``, the payload (whatever the reader saves), then a
trailer: one JSON object (the log position covered, the payload's length
and CRC-32, the Python whose key hashes it holds) and its length in 4
bytes.  Parts of the payload may be sections (``Section``): passed over
when the checkpoint is loaded (their bytes still checked), and read only
when a reader needs them.
"""

import fcntl
import mmap
import os
import stat
import struct
import zlib
from dataclasses import dataclass

import orjson

from iatools.base import errors
from iatools.base.sizes import free_bytes

MAGIC = b"iatools checkpoint 8\n"
#: A reader saves a checkpoint only when it parsed at least this much past
#: the last one: for less, parsing again costs less than writing.
SAVE_AFTER = 8 << 20
#: ... and only when the filesystem keeps this much room besides: the log
#: itself must be able to grow.
KEEP_FREE = 256 << 20
#: The function of the key hashes a checkpoint holds (iatools.base.keyhash).
_HASHES = "keyhash-1"
_TRAILER_LENGTH = struct.Struct("<I")
_BLOB_LENGTH = struct.Struct("<Q")
_CRC_WINDOW = 1 << 23
#: The bytes of a section checked at a time when it is passed over.
_PASS_OVER = 1 << 23


@dataclass(frozen=True)
class Position:
    """A line boundary in a log: how many bytes come before it, their
    CRC-32, and the number of the line that starts there."""
    offset: int = 0
    line: int = 1
    crc: int = 0

    def after(self, data, lines):
        """The position after ``data``, ``lines`` whole lines read from here."""
        return Position(self.offset + len(data), self.line + lines, zlib.crc32(data, self.crc))


START = Position()


def path_for(log_path, kind):
    return f"{log_path}.{kind}-checkpoint"


def worth_saving(loaded, reached):
    return reached.offset - loaded.offset >= SAVE_AFTER


class AppendStamp:
    """The stamp of a log, kept by one of its writers: ``before`` and
    ``after`` each append, under the log's lock."""

    def __init__(self, log_path):
        self.path = path_for(log_path, "stamp")
        self.epoch = None

    def before(self, log_fd):
        """Go on with the stamp's epoch if the log is as it left it, else
        begin a new one."""
        saved = _read_stamp(self.path)
        if saved is None or saved[:4] != _identity(os.fstat(log_fd)):
            self.epoch = int.from_bytes(os.urandom(8), "big") >> 1
        else:
            self.epoch = saved[4]

    def after(self, log_fd):
        record = _STAMP.pack(*_identity(os.fstat(log_fd)), self.epoch)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.pwrite(fd, record + zlib.crc32(record).to_bytes(4, "big"), 0)
            finally:
                os.close(fd)
        except OSError as exc:
            errors.debug(f"{self.path}: not written ({exc.strerror})")


#: A stamp: the log's device, inode, size and change time, then the epoch;
#: a CRC-32 of them follows.
_STAMP = struct.Struct("<QQQQQ")


def _identity(status):
    return status.st_dev, status.st_ino, status.st_size, status.st_ctime_ns


def _read_stamp(path):
    try:
        with open(path, "rb") as file:
            data = file.read(_STAMP.size + 4)
    except OSError:
        return None
    record = data[:_STAMP.size]
    if len(data) != _STAMP.size + 4 or zlib.crc32(record) != int.from_bytes(data[-4:], "big"):
        return None
    return _STAMP.unpack(record)


def current_epoch(log_path):
    """The epoch of the log's stamp if the log is as its last writer left
    it, else None.  A reader asks before it reads: the bytes it then reads
    are that epoch's."""
    saved = _read_stamp(path_for(log_path, "stamp"))
    try:
        held = saved is not None and saved[:4] == _identity(os.stat(log_path))
    except OSError:
        return None
    return saved[4] if held else None


def load(log_path, kind, restore):
    """``(position, state)``: the state ``restore(reader)`` reads back from
    the checkpoint of ``kind``, and the position in the log it covers; or
    ``(START, None)`` when there is none to trust."""
    path = path_for(log_path, kind)
    try:
        with open(path, "rb") as file:
            position, length, crc, epoch = _trailer(file)
            if not _unchanged(log_path, position, epoch):
                errors.debug(f"{path}: the log has changed since; not used")
                return START, None
            file.seek(len(MAGIC))
            reader = _Reader(file, length)
            state = restore(reader)
            if reader.left or reader.crc != crc:
                raise ValueError("damaged")
            errors.debug(f"{path}: used; reading the log from line {position.line}")
            return position, state
    except FileNotFoundError:
        return START, None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        errors.debug(f"{path}: not used ({exc})")
        return START, None


def covered(log_path, kind):
    """The Position that the checkpoint of ``kind`` covers, unchecked; None
    without one (for people and tests: a reader uses ``load``)."""
    try:
        with open(path_for(log_path, kind), "rb") as file:
            return _trailer(file)[0]
    except (OSError, ValueError, KeyError):
        return None


def _trailer(file):
    """The position, payload length and payload CRC-32 a checkpoint file
    ends with, checked against the file's size."""
    if file.read(len(MAGIC)) != MAGIC:
        raise ValueError("not a checkpoint of this version")
    end = file.seek(0, os.SEEK_END)
    file.seek(end - _TRAILER_LENGTH.size)
    (size,) = _TRAILER_LENGTH.unpack(file.read(_TRAILER_LENGTH.size))
    file.seek(end - _TRAILER_LENGTH.size - size)
    trailer = orjson.loads(file.read(size))
    if trailer["hashes"] != _HASHES:
        raise ValueError(f"written by {trailer['hashes']}")
    length = trailer["payload_bytes"]
    if len(MAGIC) + length + size + _TRAILER_LENGTH.size != end:
        raise ValueError("cut short")
    position = Position(trailer["offset"], trailer["line"], trailer["crc"])
    return position, length, trailer["payload_crc"], trailer.get("epoch")


def _unchanged(log_path, position, epoch):
    """Is the part of the log a checkpoint covers as it was?  Without a
    reading while the stamp holds with the checkpoint's epoch."""
    if epoch is not None and epoch == current_epoch(log_path):
        return os.stat(log_path).st_size >= position.offset
    errors.debug(f"{log_path}: not as its writers left it since the checkpoint; "
                 "the log was read to check it")
    return _log_begins_with(log_path, position)


#: log path -> the longest Position of it checked in this process: the
#: bytes before it do not change (the log is only appended to), so a second
#: checkpoint of the same log (pending reads two) is checked from there.
_checked = {}


def _log_begins_with(log_path, position):
    """Does the log still begin with the bytes ``position`` covers?"""
    checked = _checked.get(log_path, START)
    if checked.offset > position.offset:
        checked = START
    with open(log_path, "rb") as log:
        if os.fstat(log.fileno()).st_size < position.offset:
            return False
        crc = checked.crc
        # A window at a time (a page mapped counts in the resident size),
        # each starting on a page.
        first = checked.offset - checked.offset % mmap.ALLOCATIONGRANULARITY
        for start in range(first, position.offset, _CRC_WINDOW):
            length = min(_CRC_WINDOW, position.offset - start)
            with mmap.mmap(log.fileno(), length, offset=start, access=mmap.ACCESS_READ) as view, \
                    memoryview(view) as data:
                crc = zlib.crc32(data[max(0, checked.offset - start):], crc)
    if crc != position.crc:
        return False
    _checked[log_path] = max(checked, position, key=lambda p: p.offset)
    return True


def save(log_path, kind, position, size, dump, epoch=None):
    """Save what ``dump(writer)`` writes (about ``size`` bytes) as the
    checkpoint of ``kind`` for the log up to ``position``, read in the
    stamp's ``epoch`` (``current_epoch`` before the reading); was it saved?
    Gives up quietly when it cannot: a read-only directory, a filesystem
    short of room, another reader saving the same checkpoint, or one
    further on saved meanwhile."""
    path = path_for(log_path, kind)
    temp = path + ".tmp"
    try:
        if not stat.S_ISREG(os.stat(log_path).st_mode):
            return False  # a pipe, say: its bytes cannot be checked again
        if free_bytes(os.path.dirname(path) or ".") < size + KEEP_FREE:
            errors.debug(f"{path}: not saved, to leave room for the log")
            return False
        # One fixed temporary name, locked while written: a reader killed
        # mid-write leaves one file behind, which the next one reuses.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT, 0o644)
        with open(fd, "wb") as file:
            if not _locked_as_named(fd, temp):
                return False
            if _covers_more(path, position, epoch):
                errors.debug(f"{path}: not saved, another reading saved one further on")
                return False
            try:
                _write(file, position, dump, epoch)
                os.replace(temp, path)
                errors.debug(f"{path}: saved, up to line {position.line}")
                return True
            except OSError:
                os.unlink(temp)
                raise
    except OSError as exc:
        errors.debug(f"{path}: not saved ({exc.strerror})")
        return False


def _covers_more(path, position, epoch):
    """Does the checkpoint at ``path`` cover more of the log than
    ``position``, in the same ``epoch``?  A reading that began before
    another one saved must not set the checkpoint back: a refresh held back
    behind the readings typed meanwhile would have every reading after it
    parse again what they had parsed."""
    if epoch is None:
        return False
    try:
        with open(path, "rb") as file:
            saved, _, _, saved_epoch = _trailer(file)
    except (OSError, ValueError, KeyError):
        return False
    return saved_epoch == epoch and saved.offset > position.offset


def _locked_as_named(fd, name):
    """Lock ``fd`` for this process alone, if it is still the file called
    ``name`` (another reader may have just renamed it into place)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    try:
        return os.stat(name).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _write(file, position, dump, epoch):
    file.truncate(0)
    file.write(MAGIC)
    writer = _Writer(file)
    dump(writer)
    trailer = orjson.dumps({"offset": position.offset, "line": position.line,
                            "crc": position.crc, "hashes": _HASHES, "payload_bytes": writer.length,
                            "payload_crc": writer.crc, "epoch": epoch})
    file.write(trailer + _TRAILER_LENGTH.pack(len(trailer)))
    file.flush()


class _Writer:
    """The payload's way out: counts its bytes and their CRC-32."""

    def __init__(self, file):
        self.file = file
        self.length = self.crc = 0

    def write(self, data):
        self.file.write(data)
        self.length += len(data)
        self.crc = zlib.crc32(data, self.crc)

    def blob(self, data):
        """Write ``data`` so that ``_Reader.blob`` reads it back whole."""
        self.write(_BLOB_LENGTH.pack(len(data)))
        self.write(data)

    def section(self, size, dump):
        """Write what ``dump(writer)`` writes, ``size`` bytes, so that
        ``_Reader.section`` can pass over it."""
        self.write(_BLOB_LENGTH.pack(size))
        start = self.length
        dump(self)
        if self.length - start != size:
            raise RuntimeError(f"a checkpoint section of {self.length - start} bytes, "
                               f"not {size}")


class _Reader:
    """The payload's way in, within its length, counting its CRC-32."""

    def __init__(self, file, length):
        self.file = file
        self.left = length
        self.crc = 0

    def read(self, size):
        if size > self.left:
            raise ValueError("cut short")
        data = self.file.read(size)
        if len(data) != size:
            raise ValueError("cut short")
        self.left -= size
        self.crc = zlib.crc32(data, self.crc)
        return data

    def blob(self):
        (size,) = _BLOB_LENGTH.unpack(self.read(_BLOB_LENGTH.size))
        return self.read(size)

    def blob_into(self, numbers):
        """Read what ``_Writer.blob`` wrote onto the end of an array, a part
        at a time: never twice in memory."""
        (size,) = _BLOB_LENGTH.unpack(self.read(_BLOB_LENGTH.size))
        for start in range(0, size, _PASS_OVER):
            numbers.frombytes(self.read(min(_PASS_OVER, size - start)))

    def section(self):
        """The Section ``_Writer.section`` wrote, passed over: its bytes are
        checked with the rest of the payload, not kept."""
        (size,) = _BLOB_LENGTH.unpack(self.read(_BLOB_LENGTH.size))
        section = Section(self.file, self.file.tell(), size)
        for start in range(0, size, _PASS_OVER):
            self.read(min(_PASS_OVER, size - start))
        return section


class Section:
    """A part of a loaded checkpoint, read when ``load`` is called.  It
    holds the checkpoint file open: a checkpoint saved since replaces the
    file under its name (``save``), never the bytes of this one."""

    def __init__(self, file, offset, size):
        self._file = open(os.dup(file.fileno()), "rb")
        self._offset, self.size = offset, size

    def load(self, restore):
        """What ``restore(reader)`` reads back from the section, which is
        then let go."""
        with self._file:
            return self.peek(restore)

    def peek(self, restore):
        """What ``restore(reader)`` reads back from the section, which can
        then be read again."""
        self._file.seek(self._offset)
        reader = _Reader(self._file, self.size)
        state = restore(reader)
        if reader.left:
            raise ValueError("a checkpoint section read in part")
        return state

    def copy_to(self, writer):
        """Write the section's bytes with ``writer``, a part at a time."""
        self._file.seek(self._offset)
        for start in range(0, self.size, _PASS_OVER):
            writer.write(self._file.read(min(_PASS_OVER, self.size - start)))
