"""ia-resolve: turn a search, an item list or identifiers into JSONL jobs.

A shell over ``iatools.fetching.search`` (searches) and
``iatools.contract.itemlist`` (identifiers, item lists): this module adds
the shard, the --field fields, the count lines and the exit status.
"""

import os
import stat
import sys

from iatools.base import errors, signals
from iatools.base.status import ExitStatus
from iatools.contract import cli, jsonl
from iatools.contract.itemlist import item_job, itemlist_job
from iatools.contract.shard import shard_argument
from iatools.fetching import session
from iatools.fetching.search import RESERVED_FIELDS, Search

PROG = "ia-resolve"
DESCRIPTION = """\
Turn archive.org identifiers into JSONL jobs, one per item: from arguments,
from an item list (--itemlist), or from a search (--search).  Each job is
{"id": IDENTIFIER}, with "size" and "updated" when the search reports the
item's size and update date (its version: see iatools(7))."""
EPILOG = """\
examples:
  ia-resolve --search 'collection:prelinger' > jobs.jsonl
  ia-resolve --total --search 'collection:x' | ia-fetch   # a total at once
  ia-resolve --itemlist ids.txt --field batch=2026-11
  ia-resolve nasa gov.archives.arc.1 | ia-fetch
  ia-resolve --search 'collection:x' --shard 2/3   # this machine's third

An item list holds one identifier per line, or JSONL jobs; blank lines and
lines starting with # are ignored.  See ia-resolve(1) and iatools(7)."""


def build_parser():
    parser = cli.make_parser(PROG, DESCRIPTION, EPILOG)
    parser.add_argument("identifiers", nargs="*", metavar="IDENTIFIER",
                        help="an item identifier")
    parser.add_argument("-s", "--search", action="append", default=[], metavar="QUERY",
                        help="an archive.org search query (repeatable)")
    parser.add_argument("-i", "--itemlist", action="append", default=[], metavar="FILE",
                        help="read identifiers or JSONL jobs from FILE, - for stdin "
                             "(repeatable)")
    parser.add_argument("-f", "--field", action="append", default=[], metavar="NAME=VALUE",
                        help="add a string field to every job (repeatable)")
    parser.add_argument("--shard", type=shard_argument, metavar="K/N",
                        help="write only the jobs of shard K of N (1 <= K <= N), chosen by "
                             "a stable hash of the item id: N machines with K = 1..N "
                             "split the jobs exactly")
    parser.add_argument("--page-size", type=int, default=10000, metavar="N",
                        help="results per scrape request, 100-10000 (default: %(default)s)")
    parser.add_argument("--retries", type=int, default=8, metavar="N",
                        help="retries of one search page before giving up "
                             "(default: %(default)s)")
    parser.add_argument("--total", action="store_true",
                        help="announce each search's count in a '# total N' comment line, "
                             "for ia-fetch's progress (iatools skips comments; jq does not)")
    session.add_session_options(parser)
    return parser


def main(argv=None, streams=None):
    """Run ia-resolve with ``argv`` on ``streams`` (cli.Streams); the exit status."""
    return cli.run(build_parser(), _resolve, argv, streams)


def _resolve(args):
    signals.interrupt_on_stop_signals()
    session.check_config_file(args)
    fields = _parse_fields(args.field)
    if not (args.identifiers or args.itemlist or args.search):
        raise errors.UsageError("nothing to resolve: give identifiers, --itemlist or --search")
    itemlists = [_open_itemlist(path, args.streams) for path in args.itemlist]
    writer = _JobWriter(args.streams.stdout, fields, args.shard, announce=args.total)
    for position, identifier in enumerate(args.identifiers, 1):
        try:
            writer.job(item_job(identifier))
        except jsonl.BadLine as exc:
            jsonl.report_bad(f"argument {position}", exc)
            writer.bad += 1
    writer.flush()
    for path, source in itemlists:
        _read_itemlist(path, source, writer)
    if args.search:
        search_session = session.build_session(args)
        for query in args.search:
            _search(Search(query, search_session, page_size=args.page_size,
                           retries=args.retries), writer)
    if args.shard:
        errors.debug(f"--shard {args.shard}: {writer.written} jobs written, "
                     f"{writer.other_shards} left to the other shards")
    return ExitStatus.FAILED if writer.bad else ExitStatus.OK


def _parse_fields(specs):
    fields = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise errors.UsageError(f"--field {spec!r}: expected NAME=VALUE")
        if name in RESERVED_FIELDS:
            raise errors.UsageError(f"--field {spec!r}: {name} is set by ia-resolve itself")
        fields[name] = value
    return fields


def _open_itemlist(path, streams):
    if path == "-":
        jsonl.warn_if_terminal(streams.stdin_is_terminal, "an item list")
        return "stdin", streams.stdin
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise errors.UsageError(f"cannot read item list {path}: {exc.strerror}") from None
    if stat.S_ISDIR(os.fstat(fd).st_mode):  # opens, but fails at the first read
        os.close(fd)
        raise errors.UsageError(f"cannot read item list {path}: Is a directory")
    return path, fd


class _JobWriter:
    """Writes the jobs of its shard to stdout, with the --field fields,
    counting the bad inputs found on the way."""

    def __init__(self, stdout, fields, shard=None, announce=False):
        self.fields = fields
        self.shard = shard
        self.announce = announce
        self.output = jsonl.Output(stdout, what="jobs")
        self.bad = self.written = self.other_shards = 0

    def job(self, job):
        if self.shard and not self.shard.holds(job["id"]):
            self.other_shards += 1
            return
        job.update(self.fields)
        self.output.record(job)
        self.written += 1

    def flush(self):
        self.output.flush()

    def count(self, kind, count):
        """Announce a count downstream (``jsonl.count_line``), if asked to."""
        if self.announce and (count or kind == "total"):
            self.output.raw(jsonl.count_line(kind, count)[:-1])


def _read_itemlist(path, source, writer):
    reader = jsonl.RecordReader(source, itemlist_job, where=f"{path} line",
                                what=f"item list {path}")
    for jobs in reader.batches():
        for job in jobs:
            writer.job(job)
        writer.flush()
    writer.bad += reader.bad_lines


def _search(search, writer):
    received = 0
    for number, jobs in enumerate(search.pages()):
        if number == 0 and search.total is not None:
            writer.count("total", search.total)
        written = writer.written
        for job in jobs:
            writer.job(job)
        # Another shard's results and bad ones were announced in the total.
        writer.count("skipped", search.received - received - (writer.written - written))
        received = search.received
        writer.flush()
    writer.bad += search.bad


if __name__ == "__main__":
    sys.exit(main())
