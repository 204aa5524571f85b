"""ia-route: give each job a destdir on the disk with the most room after a
safety margin, never splitting an item over two disks.

A shell over iatools.routing.router.Router that keeps the bytes of the job
lines: a chunk of plain job lines is routed whole (each line gets the
destdir in place of its closing brace), any other line is parsed.
"""

import sys

from iatools.base import errors, signals
from iatools.base.sizes import duration_argument, size_argument
from iatools.base.status import ExitStatus
from iatools.contract import cli, jsonl
from iatools.contract.linegrammar import job_lines, jobs_in_chunk, plain_chunk, reclose
from iatools.routing.router import DEFAULT_ASSUME_SIZE, DEFAULT_MARGIN, DEFAULT_WAIT, Router

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


def main(argv=None, streams=None):
    """Run ia-route with ``argv`` on ``streams`` (cli.Streams); the exit status."""
    return cli.run(build_parser(), _route, argv, streams)


def _route(args):
    if args.wait <= 0:
        raise errors.UsageError("--wait must be more than 0 seconds")
    signals.interrupt_on_stop_signals()
    router = Router(args.disk, margin=args.margin, assume_size=args.assume_size,
                    wait=args.wait, no_wait=args.no_wait, disk_check=not args.no_disk_check,
                    force=args.force)
    jsonl.warn_if_terminal(args.streams.stdin_is_terminal, "jobs")
    return _RouteStream(router, args.streams).execute()


class _RouteStream:
    """The job stream through ia-route: read jobs, route them, write them,
    one input batch at a time."""

    def __init__(self, router, streams):
        self.router = router
        self.placer = router.placer
        self.stdin = streams.stdin
        self.output = jsonl.Output(streams.stdout, what="jobs")
        self.pending = []  # routed lines not yet written
        self.bad_lines = 0
        self.counting = False  # counts were announced upstream
        self.placer.before_wait = self.write_pending

    def execute(self):
        for first, count, data in jsonl.whole_lines(self.stdin, what="jobs"):
            if not count:  # the last line, without its newline
                data, count = data + b"\n", 1
            skipped = self.placer.skipped
            counts = jsonl.count_lines(data)  # announced upstream: passed on
            self.counting = self.counting or bool(counts)
            self.pending.extend(counts)
            if not self._plain_lines(count, data):
                self._line_by_line(first, data)
            if self.counting and self.placer.skipped > skipped:  # a total to correct
                self.pending.append(jsonl.count_line("skipped", self.placer.skipped - skipped))
            self.write_pending()
        for disk in self.router.disks:
            errors.debug(f"{disk.jobs} jobs routed to {disk.path}")
        if self.bad_lines or self.placer.skipped:
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
        found = self.placer.plain_line.findall(data)
        if len(found) != count:
            return False
        self.placer.route_plain(job_lines(data), found, b'"file"' in data, self.pending)
        return True

    def _count_bad_line(self, line_number):
        self.bad_lines += 1

    def _line_by_line(self, first, data):
        for line, record, job in jobs_in_chunk(first, data, self._count_bad_line):
            if self.router.passes_through(job):
                self.pending.append(line + b"\n" if job is record else jsonl.dumps(job))
                continue
            disk = self.router.disk_for(job)
            if disk is None:
                continue
            if job is record and "destdir" not in job:
                self.pending.append(reclose(line, disk.suffix))  # keeps the field order
            else:
                job["destdir"] = disk.path
                self.pending.append(jsonl.dumps(job))


if __name__ == "__main__":
    sys.exit(main())
