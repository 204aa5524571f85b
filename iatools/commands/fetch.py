"""ia-fetch: download the items (or files) named by JSONL jobs, N at a time.

A shell over the fetch engine (fetching/run.py, the Python API's
``fetch``), whose feeder thread reads stdin's lines through ``_records``.
Here: one writer thread (contract/eventwriter.py) that alone writes the
events to stdout, and the main thread, which watches for signals and draws
the progress.  The options and their checks: fetching/settings.py.
"""

import argparse
import sys

from iatools.base import errors, signals
from iatools.base.status import ExitStatus
from iatools.contract import cli, jsonl
from iatools.contract.jobs import is_failure
from iatools.contract.eventwriter import EventWriter
from iatools.fetching.progress import Progress
from iatools.fetching.run import Fetch
from iatools.fetching.settings import PROG, add_fetch_options, settings_from_options

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


def build_parser():
    """ia-fetch's parser: the fetch's options, and what the command line
    alone can get wrong."""
    parser = cli.make_parser(PROG, DESCRIPTION, EPILOG)
    # Not an option: caught to point the `ia download ID` habit to ia-resolve.
    parser.add_argument("identifiers", nargs="*", help=argparse.SUPPRESS)
    add_fetch_options(parser)
    parser.add_argument("--stdout", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv=None, streams=None):
    """Run ia-fetch with ``argv`` on ``streams`` (cli.Streams); the exit status."""
    return cli.run(build_parser(), _fetch, argv, streams)


def _check_arguments(args):
    """What only the command line can get wrong; the rest is checked with
    the settings (``settings_from_options``)."""
    if args.identifiers:
        raise errors.UsageError(
            f"jobs come as JSONL on stdin, not as arguments; make them with "
            f"ia-resolve {' '.join(args.identifiers[:3])}{' ...' * (len(args.identifiers) > 3)}"
            f" | ia-fetch")
    if args.stdout:
        raise errors.UsageError("--stdout is not supported: ia-fetch writes events to stdout; "
                                "use ia download --stdout to stream a file's contents")


def _fetch(args):
    _check_arguments(args)
    settings = settings_from_options(args)
    with signals.GracefulStop() as stop:
        jsonl.warn_if_terminal(args.streams.stdin_is_terminal, "jobs")
        return _Pipeline(args, settings).execute(stop)


class _Pipeline:
    """stdin's lines into the fetch, its events onto stdout, the progress
    and the signals."""

    def __init__(self, args, settings):
        self.streams = args.streams
        live = not args.quiet and self.streams.stderr_is_terminal
        self.progress = Progress(live=live, verbose=args.verbose)
        # Events on the terminal the frame is drawn on go above it, as messages do.
        events_above = self.progress.live and self.streams.stdout_is_terminal
        self.reader = jsonl.RecordReader(self.streams.stdin, _numbered_record,
                                         on_comment=self._announced, what="jobs")
        self.fetch = Fetch(self._records(), settings, self.progress)
        self.writer = EventWriter(self.streams.stdout, self._tally, on_lost=self.fetch.stop,
                                  write_around=self.progress.above if events_above else None)

    def execute(self, stop):
        """Run the fetch to its end; the exit status."""
        if self.progress.live:
            errors.set_display(self.progress)
        try:
            self.fetch.start()
            self.writer.start(self.fetch, on_end=stop.wake)
            while self.writer.is_alive():
                # Woken at once by a signal or by the end of the events; else
                # the progress is drawn again four times a second.
                stop.wait(0.25)
                if stop.requested:
                    self._interrupt(stop)
                self.progress.render()
            self.progress.finish()
        finally:
            # (ia-fetch run in-process: its caller's messages go to stderr.)
            errors.set_display(None)
        return self._status(stop)

    def _interrupt(self, stop):
        if not self.fetch.stopped:
            errors.warning(f"{stop.signal_name}: stopping; in-flight jobs are recorded as "
                           "failed and resumable (signal again to quit at once)")
            self.fetch.stop()

    def _status(self, stop):
        fetch = self.fetch
        if output_status := self.writer.output_status():
            return output_status
        if stop.requested:
            return ExitStatus.INTERRUPTED
        if fetch.failed or self.reader.bad_lines or fetch.bad_jobs or fetch.halted \
                or fetch.crashed:
            return ExitStatus.FAILED
        return ExitStatus.OK

    # -- read by the fetch's feeder thread ------------------------------------
    def _records(self):
        """``(where, record)`` for each job line of stdin; the fetch checks
        the jobs, the reader the JSON."""
        for records in self.reader.batches():
            yield from records

    def _announced(self, line):
        """A count announced upstream (``# total N``): the total shown
        before the input ends."""
        count = jsonl.announced_count(line)
        if count is not None:
            self.progress.tally.announce(*count)

    # -- called by the writer thread, which alone writes to stdout --------------
    def _tally(self, event):
        if event["event"] == "started":
            return
        self.progress.finished(event)
        if is_failure(event) and not self.writer.lost:
            errors.error(f"{event['id']}: {event['error']}")


def _numbered_record(line_number, line):
    """A job line's record, and where it was read: for the fetch to name
    it if it is no usable job."""
    return f"input line {line_number}", jsonl.parse_object(line)


if __name__ == "__main__":
    sys.exit(main())
