"""Claims: two ia-route processes over the same disks never split an item.

Each ia-route reads the items on its disks once, at start; a second one
started at the same time cannot see where the first sends a new item.  So
a new item is claimed: under a lock that every ia-route on the disk takes
(an exclusive ``flock`` on each disk's directory itself, so that no file is
left there, taken in one order so that two processes cannot deadlock),
ia-route looks for the item's directory on the other disks and, when none
has it, makes it on the disk it chose.  ia-fetch writes into that
directory; any later ia-route sends the item there, as it does any item
found on a disk.
"""

import errno
import fcntl
import os

# Where flock is not supported (some network filesystems) there is nothing to
# share a lock with: claims are then made without it.
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class Claims:
    """The claims of one ia-route on ``disks`` (``disks.Disk``)."""

    def __init__(self, disks):
        self.disks = disks
        self.paths = {disk: os.fsencode(disk.path) for disk in disks}
        self.lock_order = [self.paths[disk] for disk in sorted(disks, key=lambda d: d.device)]

    def claim(self, identifier, chosen):
        """The disk that holds item ``identifier`` (bytes): the one with its
        directory if any has it, else ``chosen``, where it is made now."""
        locked = self._lock()
        try:
            for disk in self.disks:
                if disk is not chosen and os.path.isdir(os.path.join(self.paths[disk],
                                                                     identifier)):
                    return disk
            try:
                os.mkdir(os.path.join(self.paths[chosen], identifier))
            except OSError:
                # There already (EEXIST), or not claimed: ia-fetch, making
                # the same directory, reports why on the job (a full disk ...).
                pass
            return chosen
        finally:
            for fd in reversed(locked):
                os.close(fd)  # which frees its flock

    def _lock(self):
        """Open and lock the disks, each only for the claim: a disk held
        open could not be unmounted.  A disk that cannot be opened is going
        (ia-route drops it)."""
        locked = []
        for path in self.lock_order:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            locked.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                if exc.errno not in _NO_FLOCK:
                    raise
        return locked
