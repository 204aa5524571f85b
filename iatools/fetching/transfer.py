"""Fetching one file safely: a temporary name, Range resume, md5 while
streaming, and a rename only once size and checksum are right.

The library's ``File.download`` writes straight to the final name, checks
the md5 only when resuming, and opens a new connection per file, so this
loop is ours.  Invariants:

* the final name only ever holds a complete, verified file (``os.replace``
  of a temporary written, checked and fsynced beside it);
* an interrupted transfer leaves its temporary, and the next attempt, in
  this run or a later one, asks only for the missing bytes (``Range`` with
  ``If-Range``, so a file that changed on the server is fetched whole) and
  then checks the md5 of the whole file;
* nothing is written through a symlink or outside the destination.
"""

import email.utils
import errno
import hashlib
import os
import socket
from dataclasses import dataclass

import urllib3

from iatools.fetching.http import (Cancelled, DiskUnavailableError, LocalDiskError, NoSpaceError,
                                   PermanentError, TransientError, describe_exception,
                                   response_error)

CHUNK_SIZE = 1 << 20
TEMP_SUFFIX = ".iatools-part"
#: The errors of a full disk, or of a full quota.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NAME_MAX = 255


@dataclass(frozen=True)
class KeepRule:
    """When a file already on disk is kept, needing no download."""

    ignore_existing: bool = False
    checksum: bool = False
    change_timestamp: bool = True


def temp_path(path):
    """The temporary beside ``path``: hidden, and short enough for NAME_MAX."""
    directory, name = os.path.split(path)
    temp = f".{name}{TEMP_SUFFIX}"
    if len(temp.encode()) > _NAME_MAX:
        temp = f".{hashlib.sha1(name.encode()).hexdigest()}{TEMP_SUFFIX}"
    return os.path.join(directory, temp)


def is_present(plan, keep_rule, head):
    """True when the file at ``plan.path`` can be kept as it is.

    ``ia download``'s rule: the size the metadata lists and a modification
    time equal to the server's Last-Modified (which ia-fetch and ia both
    give the files they write).  The metadata's mtime usually is that date
    and then decides alone; where it cannot (``_files.xml``, whose listing
    is stale, a file without an mtime or whose Last-Modified differs from
    it by seconds) ``head()`` asks the server: one bodiless request.  A HEAD,
    not a conditional GET: a 304 says only "not newer than", and a 200 would
    bring the body along before we know we want it."""
    try:
        st = os.stat(plan.path)
    except OSError:
        return False
    if keep_rule.ignore_existing:
        return True
    size_listed = plan.size is not None and not plan.is_files_xml
    if size_listed and st.st_size != plan.size:
        return False
    if keep_rule.checksum and plan.checksum_trusted:
        return _md5_of_file(plan.path) == plan.md5
    if size_listed and not keep_rule.change_timestamp:
        return True  # the local date is the download's: the size alone decides
    if size_listed and plan.mtime is not None and int(st.st_mtime) == int(plan.mtime):
        return True
    return _server_agrees(st, plan, keep_rule, head())


def _server_agrees(st, plan, keep_rule, response):
    """Whether a HEAD ``response`` matches the file's size and date."""
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) != st.st_size:
        return False
    if not keep_rule.change_timestamp:
        return True
    last_modified = _last_modified(response)
    return last_modified is not None and int(st.st_mtime) == int(last_modified)


def _md5_of_file(path, md5=None):
    md5 = md5 or hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            md5.update(chunk)
    return md5.hexdigest()


def ensure_inside(destdir, directories):
    """Refuse directories that leave ``destdir`` through an existing symlink
    (each directory once: realpath costs a system call per component)."""
    root = os.path.realpath(destdir)
    for directory in directories:
        existing = directory
        while not os.path.lexists(existing) and existing != os.path.dirname(existing):
            existing = os.path.dirname(existing)
        resolved = os.path.realpath(existing)
        if resolved != root and not resolved.startswith(root + os.sep):
            raise PermanentError(f"refusing to write in {directory}: a symlink leads outside "
                                 f"{destdir}")


class Transfer:
    """One file's download, attempt by attempt, under a RetryPolicy."""

    def __init__(self, connection, plan, cancel, on_bytes, keep_rule, fsync=True):
        self.connection = connection
        self.plan = plan
        self.cancel = cancel
        self.on_bytes = on_bytes
        self.keep_rule = keep_rule
        self.fsync = fsync
        self.temp = temp_path(plan.path)
        self.fetched = 0
        self.last_modified = None
        self._socket = None

    def attempt(self):
        """Fetch the file into its temporary and check it; ``install``
        then puts it in place."""
        offset = self._resumable_offset()
        if offset and offset == self.plan.size and self.plan.checksum_trusted:
            # Every byte is there (a crash came between them and the rename):
            # a Range past the end would only be refused, so the md5 decides.
            if self._disk(_md5_of_file, self.temp) == self.plan.md5:
                return
            self._discard_temp()
            offset = 0
        headers = self._range_headers(offset)
        with self.connection.get(self.plan.url + "?cnt=0", headers=headers) as response:
            if response.status == 416:
                self._discard_temp()
                raise TransientError("server refused the resume range; starting the file over")
            error = response_error(response)
            if error:
                raise error
            if not (offset and response.status == 206 and _range_start(response) == offset):
                offset = 0  # the server sent the whole file: start over
            md5 = hashlib.md5()
            if offset:
                _md5_of_file(self.temp, md5)
            self._socket = _socket_of(response)
            try:
                self._stream(response, offset, md5)
            finally:
                self._socket = None
            self.last_modified = _last_modified(response)
        self._verify(md5.hexdigest())

    def _resumable_offset(self):
        try:
            size = os.lstat(self.temp).st_size
        except FileNotFoundError:
            return 0
        if self.plan.size is not None and size > self.plan.size:
            self._discard_temp()
            return 0
        return size

    def _range_headers(self, offset):
        if not offset:
            return {}
        headers = {"Range": f"bytes={offset}-"}
        if self.plan.mtime:
            headers["If-Range"] = email.utils.formatdate(self.plan.mtime, usegmt=True)
        return headers

    def _stream(self, response, offset, md5):
        """Write the body to the temporary as it arrives.  ``read1`` returns
        what is there (up to CHUNK_SIZE) instead of waiting for a full
        chunk, so a slow connection still notices a cancel at once; what
        was received is written before stopping, for the resume."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if offset else os.O_TRUNC)
        fd = self._disk(os.open, self.temp, flags, 0o644)
        received = 0
        try:
            while chunk := self._read(response):
                self._write_all(fd, chunk)
                md5.update(chunk)
                received += len(chunk)
                self.fetched += len(chunk)
                self.on_bytes(len(chunk))
                if self.cancel.is_set():
                    raise Cancelled()
            if self.cancel.is_set():
                raise Cancelled()  # abort() ended the body early
            _check_length(response, received)
        finally:
            os.close(fd)

    def _read(self, response):
        try:
            return response.read1(CHUNK_SIZE)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if self.cancel.is_set():
                raise Cancelled() from None  # abort() cut the connection
            raise TransientError(describe_exception(exc)) from None

    def abort(self):
        """Cut the connection under a read that may be stalled, so a cancel
        does not wait for the read timeout (called from another thread)."""
        sock = self._socket
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _write_all(self, fd, chunk):
        view = memoryview(chunk)
        while view:
            view = view[self._disk(os.write, fd, view):]

    def _disk(self, operation, *args):
        """Run a file operation; a failure becomes a FetchError naming it."""
        try:
            return operation(*args)
        except OSError as exc:
            no_space = exc.errno in NO_SPACE
            if no_space:
                self._discard_temp()  # free the space for the other jobs
            code = errno.errorcode.get(exc.errno, "")
            kind = (NoSpaceError if no_space else
                    DiskUnavailableError if exc.errno == errno.EIO else LocalDiskError)
            raise kind(f"cannot write {self.temp}: {exc.strerror} ({code})") from None

    def _verify(self, md5):
        size = os.lstat(self.temp).st_size
        plan = self.plan
        if plan.size is not None and not plan.is_files_xml and size != plan.size:
            self._discard_temp()
            raise TransientError(
                f"size mismatch: got {size} bytes, the metadata says {plan.size}")
        if plan.checksum_trusted and md5 != plan.md5:
            self._discard_temp()
            raise TransientError("md5 mismatch (corrupt download); the file will be fetched again")

    def install(self):
        """Make the checked temporary durable, date it, and rename it into
        place: from here on the final name holds the whole file."""
        if self.fsync:
            fd = self._disk(os.open, self.temp, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                self._disk(os.fsync, fd)
            finally:
                os.close(fd)
        mtime = self.last_modified or self.plan.mtime
        if self.keep_rule.change_timestamp and mtime:
            self._disk(os.utime, self.temp, (0, mtime))  # atime 0 and this mtime, as ia does
        self._disk(os.replace, self.temp, self.plan.path)

    def _discard_temp(self):
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass


def _socket_of(response):
    """The socket under a streaming response, or None."""
    return getattr(response.connection, "sock", None)


def _check_length(response, received):
    expected = response.headers.get("Content-Length")
    if expected is not None and expected.isdigit() and int(expected) != received:
        raise TransientError(f"connection closed early: got {received} of {expected} bytes")


def _range_start(response):
    """The first byte of a 206 response, from ``Content-Range: bytes a-b/n``."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _last_modified(response):
    value = response.headers.get("Last-Modified")
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
