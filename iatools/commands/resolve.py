"""ia-resolve: turn a search, an item list or identifiers into JSONL jobs.

Searches use archive.org's scrape API, page by page, so results stream out
as they arrive and memory stays flat however many there are.  The paging
loop is ours, not the library's ``search_items``: a transient failure
retries the same cursor instead of raising and losing the enumeration.
"""

import os
import sys
import time

from iatools.base import errors, signals

from iatools.contract import cli, jsonl

from iatools.fetching import session
from iatools.base.backoff import TRANSIENT_STATUSES, backoff_delay, retry_after_seconds
from iatools.fetching.http import describe_exception
from iatools.contract.jobs import EVENT_FIELDS, identifier_problem, job_from_record, validate_job
from iatools.contract.shard import shard_argument
from iatools.base.status import ExitStatus

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
RESERVED_FIELDS = frozenset({"id", "file", "size", "updated"}) | EVENT_FIELDS
#: The search field holding the item's update dates (a list of ISO 8601
#: dates; the last is the metadata's item_last_updated: see iatools(7)).
UPDATE_DATES = "oai_updatedate"


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
    emitter = _Emitter(args.streams.stdout, fields, args.shard, announce=args.total)
    for position, identifier in enumerate(args.identifiers, 1):
        emitter.identifier(identifier, f"argument {position}")
    emitter.flush()
    for path, fd in itemlists:
        _read_itemlist(path, fd, emitter)
    if args.search:
        search_session = session.build_session(args)
        for query in args.search:
            _search(search_session, query, args, emitter)
    if args.shard:
        errors.debug(f"--shard {args.shard}: {emitter.written} jobs written, "
                     f"{emitter.other_shards} left to the other shards")
    return ExitStatus.FAILED if emitter.bad else ExitStatus.OK


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
        return path, os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise errors.UsageError(f"cannot read item list {path}: {exc.strerror}") from None


class _Emitter:
    """Writes the jobs of its shard to stdout, counting the bad inputs it
    is told about."""

    def __init__(self, stdout, fields, shard=None, announce=False):
        self.fields = fields
        self.shard = shard
        self.announce = announce
        self.output = jsonl.Output(stdout)
        self.bad = self.written = self.other_shards = 0

    def identifier(self, identifier, where, size=None, updated=None):
        problem = identifier_problem(identifier)
        if problem:
            return self.reject(where, problem)
        job = {"id": identifier}
        if isinstance(size, int) and size >= 0:
            job["size"] = size
        if updated:
            job["updated"] = updated
        self.job(job)

    def job(self, job):
        if self.shard and not self.shard.holds(job["id"]):
            self.other_shards += 1
            return
        job.update(self.fields)
        self.output.record(job)
        self.written += 1

    def reject(self, where, problem):
        jsonl.report_bad(where, problem)
        self.bad += 1

    def flush(self):
        self.output.flush()

    def count(self, kind, count):
        """Announce a count downstream (``jsonl.count_line``), if asked to."""
        if self.announce and (count or kind == "total"):
            self.output.raw(jsonl.count_line(kind, count)[:-1])


def _read_itemlist(path, fd, emitter):
    for batch in jsonl.LineReader(fd).all_lines():
        for line_number, line in batch:
            if jsonl.is_blank_or_comment(line):
                continue
            where = f"{path} line {line_number}"
            if line.lstrip()[:1] == b"{":
                try:
                    emitter.job(validate_job(job_from_record(jsonl.parse_object(line))))
                except jsonl.BadLine as exc:
                    emitter.reject(where, exc)
                continue
            try:
                identifier = line.decode("utf-8").strip()
            except UnicodeDecodeError:
                emitter.reject(where, "invalid UTF-8")
                continue
            problem = identifier_problem(identifier)
            if problem:  # a line of pretty-printed jobs, perhaps: say so
                emitter.reject(where, jsonl.BadLine(problem, jsonl.hint_for(line)))
                continue
            emitter.identifier(identifier, where)
        emitter.flush()


def _search(search_session, query, args, emitter):
    url = session.base_url(search_session) + "/services/search/v1/scrape"
    params = {"q": query, "fields": f"identifier,item_size,{UPDATE_DATES}",
              "count": max(100, min(args.page_size, 10000))}
    received = 0
    total = None
    while True:
        page = _fetch_page(search_session, url, params, args, first=received == 0)
        if total is None:
            total = page.get("total")
            if isinstance(total, int):
                emitter.count("total", total)
        written = emitter.written
        for result in page.get("items") or []:
            received += 1
            emitter.identifier(result.get("identifier"), f"search result {received}",
                               size=_as_int(result.get("item_size")),
                               updated=_latest_date(result.get(UPDATE_DATES)))
        # Another shard's results and bad ones were announced in the total.
        emitter.count("skipped", len(page.get("items") or []) - (emitter.written - written))
        emitter.flush()
        if not page.get("cursor"):
            break
        params["cursor"] = page["cursor"]
    errors.debug(f"search {query!r}: {received} results")
    if isinstance(total, int) and total != received:
        errors.warning(f"search {query!r}: archive.org announced {total} results "
                       f"but sent {received} (the index changed during the search?)")


def _urllib3_reason(exc):
    """The urllib3 error inside a requests one (whose own text holds the
    repr of a connection object), or None."""
    import urllib3

    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # inside urllib3's MaxRetryError
    return reason if isinstance(reason, (urllib3.exceptions.HTTPError, OSError)) else None


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _latest_date(dates):
    """The latest of the ISO 8601 dates archive.org gives (a list, or one
    date), which sort as text; None without any."""
    if isinstance(dates, str):
        dates = [dates]
    if not isinstance(dates, list):
        return None
    return max((d for d in dates if isinstance(d, str) and d), default=None)


class _PageProblem(Exception):
    def __init__(self, message, retry_after=None):
        super().__init__(message)
        self.retry_after = retry_after


def _fetch_page(search_session, url, params, args, first):
    """One scrape page, retrying this same cursor on transient failures."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return _request_page(search_session, url, params, first)
        except _PageProblem as problem:
            if attempt > args.retries:
                raise errors.IatoolsError(
                    f"search {params['q']!r} failed after {attempt} attempts: {problem}"
                ) from None
            delay = problem.retry_after or backoff_delay(attempt)
            errors.warning(f"search page failed ({problem}); retrying in {delay:.1f}s")
            time.sleep(delay)


def _request_page(search_session, url, params, first):
    import requests
    import urllib3

    try:
        response = search_session.get(url, params=params, auth=session.s3_auth(search_session),
                                      timeout=search_session.timeout)
    except requests.RequestException as exc:
        reason = _urllib3_reason(exc)
        problem = describe_exception(reason) if reason else f"{type(exc).__name__}: {exc}"[:200]
        if first and isinstance(getattr(reason, "original_error", reason),
                                urllib3.exceptions.ConnectTimeoutError):
            # No connection at the start (the base of refused, unresolved
            # and timed out): the network, a proxy or the host in the config
            # file, which minutes of retries would not mend.
            raise errors.IatoolsError(f"search {params['q']!r} failed: {problem}") from None
        raise _PageProblem(problem) from None
    if response.status_code in TRANSIENT_STATUSES:
        raise _PageProblem(f"HTTP {response.status_code}", retry_after_seconds(response))
    if response.status_code != 200:
        raise errors.IatoolsError(f"search {params['q']!r} failed: HTTP "
                                  f"{response.status_code} {response.reason}")
    try:
        page = response.json()
    except ValueError:
        raise _PageProblem("the response was not JSON") from None
    if not isinstance(page, dict):
        raise _PageProblem("the response was not a JSON object")
    if page.get("error"):
        if first:  # archive.org's answer to a query it cannot run
            raise errors.IatoolsError(f"search {params['q']!r} failed: {page['error']}")
        raise _PageProblem(f"archive.org said: {page['error']}")
    if page.get("total") is None or not isinstance(page.get("items"), list):
        raise _PageProblem("incomplete page (no total or items)")
    return page


if __name__ == "__main__":
    sys.exit(main())
