"""The routers of ia-route: where each job goes.

Two routers: ``SpaceRouter`` reads free space (psutil) and keeps its own
reservations for the jobs it has sent on; ``HashSpread`` (--no-disk-check)
looks at nothing and spreads items by a hash of their identifier.  Both keep
the items already on a disk there.
"""

import time
from itertools import compress, repeat
from operator import attrgetter, mod
from zlib import crc32

from iatools.base import errors
from iatools.base.keyset import KeySet
from iatools.base.sizes import format_size
from iatools.base.status import ExitStatus
from iatools.contract.linegrammar import SIZE, describe_key, key_identifier, plain_job_line
from iatools.routing.claims import Claims
from iatools.routing.disks import bytes_present, disk_problem

#: Free space is read again when older than this (a read costs a few
#: microseconds per disk: far too much for every job of a fast stream).
REFRESH_INTERVAL = 0.2

# A job line as iatools commands write it, which the full parser would
# accept and give back unchanged but for the destdir added at its end: the
# key, "size" and plain user fields; no "destdir" and no "event" (those
# lines go to the full parser).  Such lines are judged a whole chunk at a
# time: see PERFORMANCE in ia-route(1).
_PLAIN_JOB_LINE = plain_job_line(rb',"size":(?:' + SIZE + rb")")
#: The same, with the size as group 2 (b"" when there is none).
_PLAIN_SIZED_JOB_LINE = plain_job_line(rb',"size":(' + SIZE + rb")")


class NoSpace(errors.IatoolsError):
    status = ExitStatus.NO_SPACE


class HashSpread:
    """--no-disk-check: an item goes to the disk it is already on, else to
    disk ``crc32(id) mod N`` -- the same disk in every run, without memory.
    (Not the hash of --shard: with as many shards as disks, each machine
    would then fill one disk.)"""

    skipped = 0

    def __init__(self, disks):
        self.disks = disks
        self.plain_line = _PLAIN_JOB_LINE
        self.holding = [disk for disk in disks if disk.present is not None]
        self.suffixes = [disk.suffix for disk in disks]

    def place_one(self, identifier, key, size):
        disk = self._disk_of(identifier)
        disk.jobs += 1
        return disk

    def _disk_of(self, identifier):
        h = hash(identifier)
        for disk in self.holding:
            if h in disk.present:
                return disk
        return self.disks[crc32(identifier) % len(self.disks)]

    def route_plain(self, lines, keys, file_jobs, out):
        identifiers = list(map(key_identifier, keys)) if file_jobs else keys
        if self.holding:
            suffixes = [self.place_one(i, None, None).suffix for i in identifiers]
        else:
            suffixes = list(map(self.suffixes.__getitem__,
                                map(mod, map(crc32, identifiers), repeat(len(self.disks)))))
            for disk in self.disks:
                disk.jobs += suffixes.count(disk.suffix)
        routed = [b""] * (2 * len(lines))  # line, suffix, line ...: no bytes joined per line
        routed[::2] = lines
        routed[1::2] = suffixes
        out += routed


class SpaceRouter:
    """Free space, reservations, the existing-item rule, and waiting.

    A disk's reservation is the sum of the sizes routed to it, less the
    growth of its used space seen since (never below zero).  While ia-route
    waits, a disk whose used space did not grow for a whole --wait interval
    is taken to have nothing in flight: its reservation lapses (a size that
    overstated what was fetched, as with ia-fetch --glob, would otherwise
    hold it forever)."""

    def __init__(self, disks, margin, assume_size, wait, no_wait):
        import psutil  # ~10 ms of start-up, which --version and --no-disk-check do without
        self._disk_usage = psutil.disk_usage
        self.disks = disks
        self.margin, self.assume_size = margin, assume_size
        self.wait, self.no_wait = wait, no_wait
        self.plain_line = _PLAIN_SIZED_JOB_LINE
        self.before_wait = None
        self.skipped = 0
        self.checked = 0.0
        self.live = list(disks)
        #: hash -> disk of the items routed since the current batch began;
        #: moved into the disks' KeySets at the next one (``_homes``).
        self.fresh = {}
        self.claims = Claims(disks)
        self.refresh()
        self._check_sizes()

    def _check_sizes(self):
        for disk in self.disks:
            if disk.total <= self.margin:
                raise errors.UsageError(
                    f"disk {disk.path} holds {format_size(disk.total)} in all: not more than "
                    f"--margin {format_size(self.margin)}")

    def refresh(self, lapse=False):
        """Read free space; drop the disks that can no longer be written."""
        self.checked = time.monotonic()
        for disk in list(self.live):
            problem = disk_problem(disk.path, disk.device)
            if problem is None:
                try:
                    usage = self._disk_usage(disk.path)
                except OSError as exc:
                    problem = exc.strerror
            if problem is not None:
                disk.dropped = True
                self.live.remove(disk)
                errors.warning(f"disk {disk.path}: {problem}; dropped: no more jobs go there")
                continue
            grown = usage.used - disk.used
            if grown > 0:
                disk.reserved = max(0, disk.reserved - grown)
            elif lapse:
                disk.reserved = 0
            disk.total, disk.free, disk.used = usage.total, usage.free, usage.used
            disk.room = disk.free - self.margin - disk.reserved
        if not self.live:
            self._flush()
            raise errors.IatoolsError("no disk left to route to")
        self.largest = max(disk.total for disk in self.live) - self.margin

    def route_plain(self, lines, found, file_jobs, out):
        """Route plain lines one by one: a wait must find the lines before
        it in ``out``, to be written first."""
        keys = [key for key, _ in found]
        identifiers = list(map(key_identifier, keys)) if file_jobs else keys
        homes = self._homes(identifiers)
        for line, key, identifier, (_, size), home in zip(lines, keys, identifiers, found, homes):
            disk = self._place(identifier, key, int(size) if size else None, home)
            if disk is not None:
                out += (line, disk.suffix)

    def place_one(self, identifier, key, size):
        return self._place(identifier, key, size, self._homes([identifier])[0])

    def _homes(self, identifiers):
        """For each identifier, ``(disk, found there at start)`` when the
        item is known on a disk, else None: one lookup per disk for the batch."""
        self._settle()
        hashes = list(map(hash, identifiers))
        homes = [None] * len(hashes)
        for disk in self.disks:
            for known, at_start in ((disk.routed, False), (disk.present, True)):
                if known is not None:
                    for i in compress(range(len(hashes)), known.contains_each(hashes)):
                        homes[i] = homes[i] or (disk, at_start)
        return homes

    def _settle(self):
        by_disk = {}
        for h, disk in self.fresh.items():
            by_disk.setdefault(disk, []).append(h)
        for disk, hashes in by_disk.items():
            if disk.routed is None:
                disk.routed = KeySet()
            disk.routed.add(hashes)
        self.fresh.clear()

    def _place(self, identifier, key, size, home):
        """The disk for a job, waiting for room if need be; None when the
        job is skipped (too large, or its item's disk was dropped)."""
        if time.monotonic() - self.checked >= REFRESH_INTERVAL:
            self.refresh()
        if home is None and (disk := self.fresh.get(hash(identifier))) is not None:
            home = (disk, False)
        new_item = home is None
        while True:
            chosen = self._room_for(key, size, home)
            if chosen is None:
                return None
            disk, need = chosen
            if home is not None:
                break
            holder = self.claims.claim(identifier, disk)
            if holder is disk:
                break
            home = (holder, True)  # another ia-route sent it there since we started
        disk.reserved += need
        disk.room -= need
        disk.jobs += 1
        if new_item:
            self.fresh[hash(identifier)] = disk
        return disk

    def _room_for(self, key, size, home):
        """``(disk, bytes needed)`` for a job, waiting for room if need be;
        None when the job is skipped."""
        guessed = size is None
        if home is not None and home[1]:
            # Its files are (partly) there: it needs only what is missing.
            need = 0 if guessed else max(0, size - bytes_present(home[0].path, key))
            guessed = False
        else:
            need = size
        home = home and home[0]
        waiting = looked_again = False
        while True:
            if home is not None and home.dropped:
                return self._skip(key, f"its item is on {home.path}, which was dropped")
            candidates = [home] if home is not None else self.live
            largest = self.largest if home is None else home.total - self.margin
            if guessed:  # a guess never asks for more than a disk can give
                need = min(self.assume_size, largest)
            disk = max(candidates, key=_room)
            if need == 0 or disk.room >= need:
                break
            if need > largest:
                where = "its item's disk" if home is not None else "any disk"
                return self._skip(key, f"{format_size(need)} is more than {where} holds "
                                       f"beyond the margin ({format_size(largest)})")
            if not looked_again:  # the numbers may be old: look again before waiting
                self.refresh()
                looked_again = True
                continue
            if not waiting:
                self._announce_wait(key, need, disk)
                waiting = True
            time.sleep(self.wait)
            self.refresh(lapse=True)
        if waiting:
            errors.info(f"room for {describe_key(key)} on {disk.path}: going on")
        return disk, need

    def _skip(self, key, why):
        errors.error(f"{describe_key(key)}: {why}; skipped")
        self.skipped += 1
        return None

    def _announce_wait(self, key, need, disk):
        message = (f"no disk has room for {describe_key(key)} (needs {format_size(need)} beyond "
                   f"the {format_size(self.margin)} margin; {disk.path} has "
                   f"{format_size(max(0, disk.room))})")
        self._flush()
        if self.no_wait:
            raise NoSpace(f"{message}; stopping (--no-wait)")
        errors.warning(f"{message}; waiting, checking every {self.wait:g} s")

    def _flush(self):
        if self.before_wait is not None:
            self.before_wait()


_room = attrgetter("room")
