"""The disks of ia-route: checked at start and again while routing, the
items they hold at start, and the bytes of a job already there."""

import os
import stat

import orjson

from iatools.base import errors
from iatools.base.keyset import KeySet
from iatools.contract.linegrammar import key_parts


class Disk:
    """A disk as ia-route sees it: its path, what it holds and has promised."""

    def __init__(self, path, device):
        self.path = path
        self.device = device
        #: What a routed job line gets in place of its closing brace.
        self.suffix = b',"destdir":' + orjson.dumps(path) + b"}\n"
        # Hashes of the items routed here in this run, and of the item
        # directories found here at start; made when first needed (an empty
        # KeySet costs 10 ms).
        self.routed = self.present = None
        self.total = self.free = self.used = self.reserved = 0
        self.room = 0  # free space beyond the margin and the reservation
        self.dropped = False
        self.jobs = 0  # routed here in this run


def open_disk(path):
    path = os.path.abspath(path)
    try:
        device = os.stat(path).st_dev
    except OSError as exc:
        raise errors.UsageError(f"disk {path}: {exc.strerror}") from None
    problem = disk_problem(path, device)
    if problem:
        raise errors.UsageError(f"disk {path}: {problem}")
    return Disk(path, device)


def disk_problem(path, device):
    """Why no job may go to ``path`` any more, or None."""
    try:
        st = os.stat(path)
        if not stat.S_ISDIR(st.st_mode):
            return "not a directory"
        if st.st_dev != device:
            return "no longer the filesystem it was at start (unmounted?)"
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "read-only filesystem"
    except OSError as exc:
        return exc.strerror
    if not os.access(path, os.W_OK | os.X_OK):
        return "not writable"
    return None


def list_items(disk):
    """Note the item directories on ``disk`` at start: an item found there
    goes back there."""
    try:
        with os.scandir(os.fsencode(disk.path)) as entries:
            names = [hash(e.name) for e in entries
                     if not e.name.startswith(b".") and e.is_dir(follow_symlinks=False)]
    except OSError as exc:
        raise errors.UsageError(f"disk {disk.path}: cannot list it: {exc.strerror}") from None
    if names:
        disk.present = KeySet()
        disk.present.add(names)


def check_distinct(disks, no_disk_check):
    seen = {}
    for disk in disks:
        other = seen.setdefault(disk.device, disk)
        if other is disk:
            continue
        if other.path == disk.path:
            raise errors.UsageError(f"disk {disk.path} is given twice")
        if not no_disk_check:
            raise errors.UsageError(
                f"disks {other.path} and {disk.path} are on one filesystem: its free space "
                "would be counted twice (give one of them, or use --no-disk-check)")


def bytes_present(disk, key):
    """The bytes already under DISK/ID (an item job) or in DISK/ID/FILE."""
    identifier, name = key_parts(key)
    path = os.path.join(os.fsencode(disk), identifier, name)
    if name:
        try:
            return os.stat(path).st_size
        except OSError:
            return 0
    total, folders = 0, [path]
    while folders:
        try:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total
