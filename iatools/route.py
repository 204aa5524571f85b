"""ia-route: give each job a destdir on the disk with the most room after a
safety margin, never splitting an item over two disks.

Two routers: ``SpaceRouter`` reads free space (psutil) and keeps its own
reservations for the jobs it has sent on; ``HashSpread`` (--no-disk-check)
looks at nothing and spreads items by a hash of their identifier.  Both keep
the items already on a disk there.
"""

import os
import stat
import sys
import time
from itertools import compress, repeat
from operator import attrgetter, mod
from zlib import crc32

import orjson

from iatools import cli, errors, jsonl, signals
from iatools.keyset import KeySet
from iatools.linegrammar import (SIZE, describe_key, job_lines, jobs_in_chunk, key_bytes,
                                 key_identifier, key_parts, plain_chunk, plain_job_line, reclose)
from iatools.sizes import duration_argument, format_size, size_argument
from iatools.status import ExitStatus

PROG = "ia-route"
DESCRIPTION = """\
Read jobs on stdin and write them on stdout with a "destdir": the disk (-d,
repeatable) with the most free space after --margin and after what it has
already promised to jobs in flight.  All jobs of an item go to one disk, and
an item already on a disk goes back to it.  When no disk has room, wait for
one (or stop, with --no-wait)."""
EPILOG = """\
example:
  ia-resolve --search 'collection:x' | ia-joblog skip s.jsonl \\
    | ia-route -d /mnt/a -d /mnt/b | ia-fetch -j 8 | ia-joblog append s.jsonl

SIZE is bytes or a number with K, M, G or T (binary multiples).
See ia-route(1) and iatools(7)."""
DEFAULT_MARGIN = 1 << 30
DEFAULT_ASSUME_SIZE = 1 << 30
DEFAULT_WAIT = 30.0
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


def build_parser():
    parser = cli.make_parser(PROG, DESCRIPTION, EPILOG)
    parser.add_argument("-d", "--disk", action="append", required=True, metavar="DIR",
                        help="a disk to route to: an existing, writable directory, e.g. a "
                             "mount point (repeatable)")
    parser.add_argument("--margin", type=size_argument, default=DEFAULT_MARGIN, metavar="SIZE",
                        help="free space to leave on every disk (default: 1G)")
    parser.add_argument("--assume-size", type=size_argument, default=DEFAULT_ASSUME_SIZE,
                        metavar="SIZE",
                        help='the space to set aside for a job without "size" (default: 1G)')
    parser.add_argument("--wait", type=duration_argument, default=DEFAULT_WAIT,
                        metavar="SECONDS",
                        help="when no disk has room, check again this often (default: 30)")
    parser.add_argument("--no-wait", action="store_true",
                        help="when no disk has room, stop with exit status 3 instead of waiting")
    parser.add_argument("--no-disk-check", action="store_true",
                        help="do not look at free space: spread items evenly over the disks")
    parser.add_argument("--force", action="store_true",
                        help='route jobs that already have a "destdir" too (they pass through '
                             "unchanged otherwise)")
    return parser


def main(argv=None):
    return cli.run(build_parser(), _route, argv)


class NoSpace(errors.IatoolsError):
    status = ExitStatus.NO_SPACE


def _route(args):
    if args.wait <= 0:
        raise errors.UsageError("--wait must be more than 0 seconds")
    signals.interrupt_on_stop_signals()
    disks = [_open_disk(path) for path in args.disk]
    _check_distinct(disks, args.no_disk_check)
    for disk in disks:
        _list_items(disk)
    if args.no_disk_check:
        router = HashSpread(disks)
    else:
        router = SpaceRouter(disks, args.margin, args.assume_size, args.wait, args.no_wait)
    jsonl.warn_if_terminal(0, "jobs")
    return _Run(router, args.force).execute()


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


def _open_disk(path):
    path = os.path.abspath(path)
    try:
        device = os.stat(path).st_dev
    except OSError as exc:
        raise errors.UsageError(f"disk {path}: {exc.strerror}") from None
    problem = _disk_problem(path, device)
    if problem:
        raise errors.UsageError(f"disk {path}: {problem}")
    return Disk(path, device)


def _disk_problem(path, device):
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


def _list_items(disk):
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


def _check_distinct(disks, no_disk_check):
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


class _Run:
    """Read jobs, route them, write them: one input batch at a time."""

    def __init__(self, router, force):
        self.router = router
        self.force = force
        self.output = jsonl.Output()
        self.pending = []  # routed lines not yet written
        self.bad_lines = 0
        self.counting = False  # counts were announced upstream
        router.before_wait = self.write_pending

    def execute(self):
        for first, count, data in jsonl.whole_lines(0):
            if not count:  # the last line, without its newline
                data, count = data + b"\n", 1
            skipped = self.router.skipped
            counts = jsonl.count_lines(data)  # announced upstream: passed on
            self.counting = self.counting or bool(counts)
            self.pending.extend(counts)
            if not self._plain_lines(count, data):
                self._line_by_line(first, data)
            if self.counting and self.router.skipped > skipped:  # a total to correct
                self.pending.append(jsonl.count_line("skipped", self.router.skipped - skipped))
            self.write_pending()
        for disk in self.router.disks:
            errors.debug(f"{disk.jobs} jobs routed to {disk.path}")
        if self.bad_lines or self.router.skipped:
            return ExitStatus.FAILED
        return ExitStatus.OK

    def write_pending(self):
        self.output.lines(self.pending)
        self.output.flush()
        self.pending.clear()  # the same list: routers append to it

    def _plain_lines(self, count, data):
        """Route a chunk whose every line is a plain job line: its lines keep
        their bytes, the destdir takes the place of the closing brace."""
        if not plain_chunk(data):
            return False
        found = self.router.plain_line.findall(data)
        if len(found) != count:
            return False
        self.router.route_plain(job_lines(data), found, b'"file"' in data, self.pending)
        return True

    def _count_bad_line(self, line_number):
        self.bad_lines += 1

    def _line_by_line(self, first, data):
        for line, record, job in jobs_in_chunk(first, data, self._count_bad_line):
            if "destdir" in job and not self.force:
                self.pending.append(line + b"\n" if job is record else jsonl.dumps(job))
                continue
            disk = self.router.place_one(job["id"].encode(), key_bytes(job), job.get("size"))
            if disk is None:
                continue
            if job is record and "destdir" not in job:
                self.pending.append(reclose(line, disk.suffix))  # keeps the field order
            else:
                job["destdir"] = disk.path
                self.pending.append(jsonl.dumps(job))


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
            problem = _disk_problem(disk.path, disk.device)
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
        guessed = size is None
        if home is not None and home[1]:
            # Its files are (partly) there: it needs only what is missing.
            need = 0 if guessed else max(0, size - _bytes_present(home[0].path, key))
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
        disk.reserved += need
        disk.room -= need
        disk.jobs += 1
        if home is None:
            self.fresh[hash(identifier)] = disk
        return disk

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


def _bytes_present(disk, key):
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


if __name__ == "__main__":
    sys.exit(main())
