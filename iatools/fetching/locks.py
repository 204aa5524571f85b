"""Per-item locks: two ia-fetch processes never work on one item at once.

The lock of item ID under DESTDIR is the file ``DESTDIR/.ID.iatools-lock``,
beside the item's directory, holding its owner as JSON (host, pid, start
time).  Where the filesystem supports ``flock`` (local filesystems, NFSv4),
the holder keeps an exclusive ``flock`` on it: the kernel or the NFS server
frees it when the holder dies, however it dies.  Elsewhere the lock is the
file's existence (``O_EXCL``), and a lock whose owner is gone (same host,
pid not running) is stale.  Either way a lock not refreshed for
``timeout`` seconds is stale: its owner is hung or its host is gone.  The
holder refreshes its locks' modification times every ``REFRESH_INTERVAL``.
"""

import errno
import fcntl
import os
import threading
import time

import orjson

from iatools.base import errors
from iatools.contract.jobs import HOST, timestamp

LOCK_SUFFIX = ".iatools-lock"
REFRESH_INTERVAL = 60.0
#: Default age after which an unrefreshed lock is taken over.
DEFAULT_TIMEOUT = 3600.0
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def lock_path(destdir, identifier):
    return os.path.join(destdir, f".{identifier}{LOCK_SUFFIX}")


class Locked(Exception):
    """The item is locked by a live owner (``owner``: its JSON, or {})."""

    def __init__(self, owner):
        super().__init__("locked")
        self.owner = owner


class ItemLocks:
    """The locks one process holds, counted so that several jobs of one
    item (file-level jobs) in this process share one lock."""

    def __init__(self, timeout=DEFAULT_TIMEOUT):
        self.timeout = timeout
        self._held = {}  # path -> [fd, count]
        self._mutex = threading.Lock()
        self._refreshed = time.monotonic()

    def acquire(self, destdir, identifier):
        """Take the item's lock or raise Locked; OSError if it cannot be made."""
        path = lock_path(destdir, identifier)
        with self._mutex:
            if path in self._held:
                self._held[path][1] += 1
                return path
            self._held[path] = [_take(path, self.timeout), 1]
            return path

    def release(self, path):
        with self._mutex:
            entry = self._held[path]
            entry[1] -= 1
            if entry[1]:
                return
            del self._held[path]
        _give_up(path, entry[0])

    def refresh(self):
        """Touch held locks so that others do not think them stale."""
        if time.monotonic() - self._refreshed < REFRESH_INTERVAL:
            return
        self._refreshed = time.monotonic()
        with self._mutex:
            descriptors = [fd for fd, _ in self._held.values()]
        for fd in descriptors:
            try:
                os.utime(fd)
            except OSError:
                pass


def _take(path, timeout):
    for _ in range(3):  # the file changed under us (taken over, released): again
        fd = _open_and_lock(path, timeout)
        if fd is not None:
            try:
                _write_owner(fd)
            except OSError:
                _give_up(path, fd)  # a disk full: no ownerless lock left behind
                raise
            return fd
    raise Locked(read_owner(path))


def _open_and_lock(path, timeout):
    """A descriptor holding the lock; None to try again; or raise Locked."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd, created = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644), True
    except FileExistsError:
        try:
            fd, created = os.open(path, flags), False
        except FileNotFoundError:
            return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return _break_if_stale(path, timeout, alive=True)
    except OSError as exc:
        # No flock here: the lock is the file, ours only if we created it.
        if exc.errno in _NO_FLOCK and created:
            return fd
        os.close(fd)
        if exc.errno not in _NO_FLOCK:
            raise
        return _break_if_stale(path, timeout, alive=False)
    if not _same_file(fd, path):
        os.close(fd)
        return None
    if not created:
        owner = read_owner(path)
        if owner:
            errors.warning(f"taking over the lock {path} of {_describe(owner)}, which is gone")
    return fd


def _break_if_stale(path, timeout, alive):
    """Remove a stale lock (and return None: try again), else raise Locked."""
    owner = read_owner(path)
    if alive and not owner:
        owner = _owner_once_written(path)
    if not is_stale(path, owner, timeout, alive):
        raise Locked(owner)
    errors.warning(f"taking over the stale lock {path} of {_describe(owner)}")
    remove_lock(path)
    return None


def _owner_once_written(path, tries=20, pause=0.005):
    """The owner of a lock just created: its live holder writes it right
    after taking the lock, a moment that another process may fall into."""
    for _ in range(tries):
        time.sleep(pause)
        owner = read_owner(path)
        if owner:
            return owner
    return {}


def is_stale(path, owner, timeout, alive):
    """A lock is stale when unrefreshed for ``timeout`` seconds or, unless a
    live holder is known (``alive``), when its owner on this host is gone."""
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return True
    if age > timeout:
        return True
    return not alive and owner.get("host") == HOST and not _pid_running(owner.get("pid"))


def lock_state(path, timeout=DEFAULT_TIMEOUT):
    """``(owner, stale)`` of a lock file found on disk."""
    owner = read_owner(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return owner, True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return owner, True  # nobody holds it: its holder died
    except BlockingIOError:
        return owner, is_stale(path, owner, timeout, alive=True)
    except OSError:  # no flock here: judge by owner and age
        return owner, is_stale(path, owner, timeout, alive=False)
    finally:
        os.close(fd)


def read_owner(path):
    try:
        with open(path, "rb") as f:
            owner = orjson.loads(f.read(4096) or b"{}")
    except (OSError, orjson.JSONDecodeError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _write_owner(fd):
    owner = orjson.dumps({"host": HOST, "pid": os.getpid(), "started": timestamp()})
    os.ftruncate(fd, 0)
    os.pwrite(fd, owner + b"\n", 0)


def _give_up(path, fd):
    try:
        if _same_file(fd, path):  # not taken over meanwhile
            remove_lock(path)
    finally:
        os.close(fd)


def _same_file(fd, path):
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def remove_lock(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _pid_running(pid):
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(owner):
    if not owner:
        return "an unknown owner"
    return f"pid {owner.get('pid')} on {owner.get('host')} (since {owner.get('started')})"
