"""ia-fetch's options and the frozen settings of a run made from them.

One source for both doors into a fetch: the ia-fetch command adds these
options to its parser, and the Python API (``iatools.fetch(jobs, glob=...)``)
turns its keyword arguments into the same options and parses them with the
same parser, so defaults, conversions and checks cannot drift apart.
"""

import argparse
import os
import re
from dataclasses import dataclass

from iatools.base import errors, sizes
from iatools.contract import cli
from iatools.fetching import session
from iatools.fetching.bwlimit import bwlimit_argument
from iatools.fetching.http import Connection
from iatools.fetching.locks import DEFAULT_TIMEOUT
from iatools.fetching.selection import Filters, add_selection_options, filters_from_args
from iatools.fetching.transfer import KeepRule

PROG = "ia-fetch"
#: Concurrent connections (``--jobs``, the API's ``workers``) unless told.
DEFAULT_WORKERS = 4
#: archive.org's advice: more connections than this risks a block.
POLITE_CONNECTIONS = 20
_HALT = re.compile(r"(now|soon),fail=(\d+)(%?)")


@dataclass(frozen=True)
class Halt:
    """GNU parallel's --halt: stop once enough jobs failed."""

    when: str = "never"
    threshold: int = 0
    percent: bool = False
    #: a percentage is judged only after this many jobs have finished
    min_sample: int = 10

    def reached(self, failed, finished):
        """Whether ``failed`` jobs out of ``finished`` call for the halt."""
        if self.when == "never" or failed == 0:
            return False
        if self.percent:
            return finished >= self.min_sample and 100 * failed >= self.threshold * finished
        return failed >= self.threshold

    def __str__(self):
        if self.when == "never":
            return "never"
        return f"{self.when},fail={self.threshold}{'%' if self.percent else ''}"


def halt_argument(text):
    """Parse --halt WHEN (argparse ``type``)."""
    if text == "never":
        return Halt()
    match = _HALT.fullmatch(text)
    if not match or int(match.group(2)) == 0:
        raise argparse.ArgumentTypeError(
            f"invalid --halt {text!r} (use never, now,fail=N, soon,fail=N or soon,fail=N%)")
    return Halt(match.group(1), int(match.group(2)), bool(match.group(3)))


def add_fetch_options(parser):
    """Every option of ia-fetch that shapes a run (all but -q, -v and the
    command line's own checks), in the order --help shows them."""
    parser.add_argument("-j", "--jobs", type=int, default=DEFAULT_WORKERS, metavar="N",
                        help="concurrent connections to archive.org (default: %(default)s; "
                             f"more than {POLITE_CONNECTIONS} is allowed with a warning)")
    parser.add_argument("-d", "--destdir", metavar="DIR",
                        help="where item directories go when a job has no destdir "
                             "(default: the current directory)")
    add_selection_options(parser)
    _add_disk_options(parser.add_argument_group("files on disk"))
    _add_running_options(parser.add_argument_group("running"))
    session.add_session_options(parser)


def _add_disk_options(disk):
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


def _add_running_options(run):
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


@dataclass(frozen=True)
class FetchSettings:
    """Everything a fetch run needs to know, fixed for the run."""

    session: object  # the ArchiveSession: item file lists, the host
    base_url: str
    client: object  # session.client_settings: User-Agent, credentials, timeout
    filters: Filters
    keep_rule: KeepRule
    workers: int  # --jobs: the workers, one connection each
    destdir: str  # absolute: where a job without a destdir goes
    retries: int
    dry_run: bool
    bwlimit: object  # a timetable (bwlimit.parse_timetable), or None
    halt: Halt
    lock_timeout: float  # seconds
    flat: bool  # --no-directories
    fsync: bool
    delete: bool
    read_ahead: int  # jobs read before a worker takes them

    def new_connection(self, pacing):
        """A worker's own HTTP connection."""
        return Connection(self.client, pacing)


def settings_from_options(options):
    """FetchSettings from the parsed options of ``add_fetch_options``;
    UsageError for options that do not go together or a bad config file
    (before any network I/O)."""
    _check(options)
    archive_session = session.build_session(options)  # a bad config fails here, before any job
    return FetchSettings(
        session=archive_session, base_url=session.base_url(archive_session),
        client=session.client_settings(archive_session, options.timeout),
        filters=filters_from_args(options),
        keep_rule=KeepRule(options.ignore_existing, options.checksum,
                           not options.no_change_timestamp),
        workers=options.jobs, destdir=os.path.abspath(options.destdir or os.getcwd()),
        retries=options.retries, dry_run=options.dry_run, bwlimit=options.bwlimit,
        halt=options.halt, lock_timeout=options.lock_timeout, flat=options.no_directories,
        fsync=not options.no_fsync, delete=options.delete,
        read_ahead=max(2 * options.jobs, 8))


def _check(options):
    if options.delete and options.no_directories:
        raise errors.UsageError("--delete needs item directories: it cannot tell an item's "
                                "files apart with --no-directories")
    check_run_options(options)
    if options.jobs > POLITE_CONNECTIONS:
        errors.warning(f"{options.jobs} connections: archive.org asks bulk users to stay at "
                       f"{POLITE_CONNECTIONS} or fewer, and may block an address that hammers")


def check_run_options(options):
    """The checks of the options that ia-fetch and ia-verify share: --jobs,
    --retries, --destdir."""
    if options.jobs < 1:
        raise errors.UsageError("--jobs must be at least 1")
    if options.retries < 0:
        raise errors.UsageError("--retries must be 0 or more")
    if options.destdir is not None and not os.path.isdir(options.destdir):
        raise errors.UsageError(f"--destdir {options.destdir}: not a directory")


#: Options of ia-fetch's parser that are no keyword of the API: the
#: command's verbosity, and --jobs, which the API calls ``workers``.
_NOT_KEYWORDS = frozenset({"quiet", "verbose", "jobs"})


def settings_from_keywords(workers=DEFAULT_WORKERS, **keywords):
    """FetchSettings from the API's keyword arguments: ia-fetch's long
    options with ``_`` for ``-`` (``glob=["*.pdf"]``, ``dry_run=True``,
    ``halt="soon,fail=5"``); True sets a flag, None or False leaves an
    option at its default, a list repeats it.  TypeError for an unknown
    keyword, ValueError for a bad value (with ia-fetch's message)."""
    parser = cli.make_parser(PROG, "")
    add_fetch_options(parser)
    known = set(vars(parser.parse_args([]))) - _NOT_KEYWORDS
    unknown = sorted(set(keywords) - known)
    if unknown:
        raise TypeError(f"fetch() got an unexpected keyword argument {unknown[0]!r} "
                        f"(known: workers, {', '.join(sorted(known))})")
    # A bad value is a UsageError, which is a ValueError too.
    return settings_from_options(parser.parse_args(_as_arguments({"jobs": workers, **keywords})))


def _as_arguments(keywords):
    """The command-line arguments that say what ``keywords`` say."""
    arguments = []
    for name, value in keywords.items():
        option = "--" + name.replace("_", "-")
        values = value if isinstance(value, (list, tuple)) else [value]
        for each in values:
            if each is True:
                arguments.append(option)
            elif each is not None and each is not False:
                # --option=VALUE: a value that starts with "-" stays a value
                arguments.append(f"{option}={each}")
    return arguments
