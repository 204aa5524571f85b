"""ia-fetch: download the items (or files) named by JSONL jobs, N at a time.

Threads: a reader turns stdin into jobs (blocking when the pool is busy:
backpressure), N workers each with its own keep-alive session (pool.py),
one writer that alone writes events to stdout, and the main thread, which
watches for signals and draws progress.  Transfers themselves: transfer.py.
"""

import argparse
import os
import queue
import re
import sys
import threading
from dataclasses import dataclass

from iatools.base import errors, signals, sizes

from iatools.contract import cli, jsonl

from iatools.fetching import session
from iatools.fetching.bwlimit import bwlimit_argument
from iatools.fetching.hostpacing import HostPacing
from iatools.fetching.http import Connection
from iatools.contract.jobs import job_of_line
from iatools.fetching.locks import DEFAULT_TIMEOUT, ItemLocks
from iatools.fetching.pool import Pool
from iatools.fetching.progress import Progress
from iatools.fetching.selection import Filters, add_selection_options, filters_from_args
from iatools.base.status import ExitStatus
from iatools.fetching.transfer import KeepRule

PROG = "ia-fetch"
DESCRIPTION = """\
Download archive.org items or files named by JSONL jobs on stdin, with N
concurrent connections, into DESTDIR/IDENTIFIER/NAME (the layout, names and
modification times of "ia download --destdir DESTDIR").  Writes one event
per line on stdout (started, completed, failed ...); progress goes to stderr.
Files are written under a temporary name and renamed into place only once
their size and md5 check out; interrupted transfers resume with Range."""
EPILOG = """\
examples:
  ia-resolve --search 'collection:x' | ia-fetch -j 8 -d /data > events.jsonl
  ia-joblog failed s.jsonl | ia-fetch -j 4 | ia-joblog append s.jsonl
  ia-resolve nasa | ia-fetch --dry-run --glob '*.jpg'

DESTDIR is the job's "destdir" field, else --destdir, else the current
directory.  See ia-fetch(1) and iatools(7)."""
#: archive.org's advice: more connections than this risks a block.
POLITE_CONNECTIONS = 20
#: Seconds after a cancel before jobs still in flight are given up: enough
#: for cut transfers to save what they received and for the finisher to
#: rename what was whole; a request still waiting for its response headers
#: would otherwise hold the run until --timeout.
ABANDON_AFTER = 1.0
_HALT = re.compile(r"(now|soon),fail=(\d+)(%?)")


@dataclass
class Halt:
    """GNU parallel's --halt: stop once enough jobs failed."""

    when: str = "never"
    threshold: int = 0
    percent: bool = False
    #: a percentage is judged only after this many jobs have finished
    min_sample: int = 10

    def reached(self, failed, finished):
        if self.when == "never" or failed == 0:
            return False
        if self.percent:
            return finished >= self.min_sample and 100 * failed >= self.threshold * finished
        return failed >= self.threshold


def halt_argument(text):
    if text == "never":
        return Halt()
    match = _HALT.fullmatch(text)
    if not match or int(match.group(2)) == 0:
        raise argparse.ArgumentTypeError(
            f"invalid --halt {text!r} (use never, now,fail=N, soon,fail=N or soon,fail=N%)")
    return Halt(match.group(1), int(match.group(2)), bool(match.group(3)))


def build_parser():
    parser = cli.make_parser(PROG, DESCRIPTION, EPILOG)
    # Not an option: caught to point the `ia download ID` habit to ia-resolve.
    parser.add_argument("identifiers", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("-j", "--jobs", type=int, default=4, metavar="N",
                        help="concurrent connections to archive.org (default: %(default)s; "
                             f"more than {POLITE_CONNECTIONS} is allowed with a warning)")
    parser.add_argument("-d", "--destdir", metavar="DIR",
                        help="where item directories go when a job has no destdir "
                             "(default: the current directory)")
    add_selection_options(parser)
    disk = parser.add_argument_group("files on disk")
    disk.add_argument("--no-directories", action="store_true",
                      help="put files straight into DESTDIR, without item directories")
    disk.add_argument("--no-change-timestamp", action="store_true",
                      help="leave modification times at the download time")
    disk.add_argument("--ignore-existing", action="store_true",
                      help="keep any file already present, whatever its size or date")
    disk.add_argument("-C", "--checksum", action="store_true",
                      help="keep a file already present only if its md5 matches")
    disk.add_argument("--delete", action="store_true",
                      help="delete the files in an item's directory that the item no longer "
                           "lists (kept and reported as \"files_removed\" by default)")
    disk.add_argument("--no-fsync", action="store_true",
                      help="do not fsync each file before renaming it into place "
                           "(faster; a power cut may then leave empty files)")
    run = parser.add_argument_group("running")
    run.add_argument("--retries", type=int, default=5, metavar="N",
                     help="retries of each request on transient errors (default: %(default)s)")
    run.add_argument("--bwlimit", type=bwlimit_argument, metavar="RATE",
                     help="at most RATE bytes/s for all transfers together (K, M, G: "
                          "binary multiples), or a daily timetable like rclone's: "
                          "'08:00,512K 19:00,10M 23:00,off'")
    run.add_argument("--halt", type=halt_argument, default=Halt(), metavar="WHEN",
                     help="stop early on failures: never (default), now,fail=N, "
                          "soon,fail=N or soon,fail=N%%")
    run.add_argument("--lock-timeout", type=sizes.duration_argument, default=DEFAULT_TIMEOUT,
                     metavar="DURATION",
                     help="take over an item lock not refreshed for this long, e.g. 30m "
                          "(default: 1h; a live ia-fetch refreshes its locks every minute)")
    run.add_argument("-n", "--dry-run", action="store_true",
                     help="emit a 'planned' event per job (files, bytes) and touch nothing")
    run.add_argument("--stdout", action="store_true", help=argparse.SUPPRESS)
    session.add_session_options(parser)
    return parser


def main(argv=None, streams=None):
    """Run ia-fetch with ``argv`` on ``streams`` (cli.Streams); the exit status."""
    return cli.run(build_parser(), _fetch, argv, streams)


@dataclass(frozen=True)
class FetchSettings:
    """What every worker of the pool needs to know, fixed for the run."""

    session: object  # the ArchiveSession: item file lists, the host
    base_url: str
    client: object  # session.client_settings: User-Agent, credentials, timeout
    filters: Filters
    keep_rule: KeepRule
    retries: int
    dry_run: bool
    bwlimit: object  # a timetable (bwlimit.parse_timetable), or None
    flat: bool  # --no-directories
    fsync: bool
    delete: bool
    read_ahead: int  # jobs read before a worker takes them

    def new_connection(self, pacing):
        return Connection(self.client, pacing)


def _check_arguments(args):
    if args.identifiers:
        raise errors.UsageError(
            f"jobs come as JSONL on stdin, not as arguments; make them with "
            f"ia-resolve {' '.join(args.identifiers[:3])}{' ...' * (len(args.identifiers) > 3)}"
            f" | ia-fetch")
    if args.stdout:
        raise errors.UsageError("--stdout is not supported: ia-fetch writes events to stdout; "
                                "use ia download --stdout to stream a file's contents")
    if args.delete and args.no_directories:
        raise errors.UsageError("--delete needs item directories: it cannot tell an item's "
                                "files apart with --no-directories")
    if args.jobs < 1:
        raise errors.UsageError("--jobs must be at least 1")
    if args.retries < 0:
        raise errors.UsageError("--retries must be 0 or more")
    if args.destdir is not None and not os.path.isdir(args.destdir):
        raise errors.UsageError(f"--destdir {args.destdir}: not a directory")
    if args.jobs > POLITE_CONNECTIONS:
        errors.warning(f"{args.jobs} connections: archive.org asks bulk users to stay at "
                       f"{POLITE_CONNECTIONS} or fewer, and may block an address that hammers")


def _settings(args):
    archive_session = session.build_session(args)  # a bad config fails here, before any job
    return FetchSettings(
        session=archive_session, base_url=session.base_url(archive_session),
        client=session.client_settings(archive_session, args.timeout),
        filters=filters_from_args(args),
        keep_rule=KeepRule(args.ignore_existing, args.checksum, not args.no_change_timestamp),
        retries=args.retries, dry_run=args.dry_run, bwlimit=args.bwlimit,
        flat=args.no_directories, fsync=not args.no_fsync, delete=args.delete,
        read_ahead=max(2 * args.jobs, 8))


def _fetch(args):
    _check_arguments(args)
    settings = _settings(args)
    stop = signals.GracefulStop().install()
    jsonl.warn_if_terminal(args.streams.stdin_is_terminal, "jobs")
    pipeline = _Pipeline(args, settings)
    return pipeline.execute(stop)


class _Pipeline:
    """The reader, the pool, the writer, and how the run ends."""

    def __init__(self, args, settings):
        self.args = args
        self.cancel = threading.Event()
        self.streams = args.streams
        live = not args.quiet and self.streams.stderr_is_terminal
        self.progress = Progress(live=live, verbose=args.verbose)
        # Events on the terminal the frame is drawn on go above it, as messages do.
        self.events_above = self.progress.live and self.streams.stdout_is_terminal
        self.count_lock = threading.Lock()
        self.locks = ItemLocks(args.lock_timeout)
        pacing = HostPacing(args.jobs, notify=self._slowed)
        self.progress.slowdown = pacing.describe
        self.pool = Pool(settings, self._emit, self.cancel, pacing, self.progress, self.locks)
        self.events = queue.SimpleQueue()
        self.default_destdir = os.path.abspath(args.destdir or os.getcwd())
        self.reader = jsonl.RecordReader(self.streams.stdin, self._job,
                                         on_comment=self._announced)
        self.failed = self.finished = 0
        self.broken_pipe = False
        self.halted = False

    def execute(self, stop):
        writer = threading.Thread(target=self._write_events, name="writer", daemon=True)
        reader = threading.Thread(target=self._read_jobs, name="reader", daemon=True)
        if self.progress.live:
            errors.set_display(self.progress)
        writer.start()
        self.pool.start(self.args.jobs, on_finished=stop.wake)
        reader.start()
        while self.pool.alive():
            # Woken at once by a signal or by the end of the work; else the
            # progress and the locks are refreshed four times a second.
            stop.wait(0.25)
            if stop.requested:
                self._interrupt(stop)
            if self.pool.overdue(ABANDON_AFTER):
                self.pool.abandon()
                break
            self.progress.render()
            self.locks.refresh()
        self.events.put(None)
        writer.join()
        self.progress.finish()
        errors.set_display(None)
        return self._status(stop)

    def _interrupt(self, stop):
        if not self.cancel.is_set():
            errors.warning(f"{stop.signal_name}: stopping; in-flight jobs are recorded as "
                           "failed and resumable (signal again to quit at once)")
            self.pool.cancel_now()

    def _slowed(self, message):
        """-v: say when and why ia-fetch slowed down (above the frame)."""
        errors.debug(f"slowing down: {message}")

    def _status(self, stop):
        if self.broken_pipe:
            return ExitStatus.BROKEN_PIPE
        if stop.requested:
            return ExitStatus.INTERRUPTED
        if self.failed or self.reader.bad_lines or self.halted or self.pool.crashed:
            return ExitStatus.FAILED
        return ExitStatus.OK

    # -- reader thread ------------------------------------------------------
    def _read_jobs(self):
        try:
            for jobs in self.reader.batches():
                for job in jobs:
                    if not self.pool.offer(job):
                        return
                    self.progress.read += 1
            self.progress.tally.total = self.progress.read
        finally:
            self.pool.close_input()

    def _announced(self, line):
        """A count announced upstream (``# total N``): the total shown
        before the input ends."""
        count = jsonl.announced_count(line)
        if count is not None:
            self.progress.tally.announce(*count)

    def _job(self, line_number, line):
        return job_of_line(line_number, line, self.default_destdir, self._failed_input)

    def _failed_input(self, event):
        """A bad job that is a job all the same: it counts in the total."""
        self.progress.read += 1
        self._emit(event)

    # -- events: counted where they are made, written by the writer thread --
    def _emit(self, event):
        """Queue an event for the writer.  An outcome is counted here, in
        the thread that ends the job and before its worker takes another:
        once --halt now is reached, nothing more starts."""
        self.events.put(event)
        if event["event"] == "started":
            return
        with self.count_lock:
            self.finished += 1
            if event["event"] != "failed":
                return
            self.failed += 1
            halt = self.args.halt
            if self.halted or not halt.reached(self.failed, self.finished):
                return
            self.halted = True
        self._halt(halt)

    def _write_events(self):
        output = jsonl.Output(self.streams.stdout)
        while (event := self.events.get()) is not None:
            self._tally(event)
            if self.broken_pipe:
                continue
            if self.events_above:  # the frame's terminal: the event goes above it
                written = self.progress.above(lambda: output.event(event))
            else:
                written = output.event(event)
            if not written:
                self.broken_pipe = True
                self.pool.cancel_now()

    def _tally(self, event):
        if event["event"] == "started":
            return
        self.progress.finished(event)
        if event["event"] == "failed" and event.get("error"):
            errors.error(f"{event['id']}: {event['error']}")

    def _halt(self, halt):
        errors.warning(f"--halt {halt.when},fail={halt.threshold}{'%' if halt.percent else ''} "
                       f"reached after {self.failed} failed jobs; stopping")
        if halt.when == "now":
            self.pool.cancel_now()
        else:
            self.pool.stop_taking_jobs()


if __name__ == "__main__":
    sys.exit(main())
