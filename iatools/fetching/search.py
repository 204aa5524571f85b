"""A search as jobs: ``search_jobs`` (the Python API) and ``Search``, which
ia-resolve reads page by page.

Searches use archive.org's scrape API, page by page, so results stream out
as they arrive and memory stays flat however many there are.  The paging
loop is ours, not the library's ``search_items``: a transient failure
retries the same cursor instead of raising and losing the enumeration.
"""

import time

from iatools.base import errors
from iatools.base.backoff import TRANSIENT_STATUSES, backoff_delay, retry_after_seconds
from iatools.contract import jsonl
from iatools.contract.itemlist import item_job
from iatools.contract.jobs import EVENT_FIELDS
from iatools.fetching import session as sessions
from iatools.fetching.http import describe_exception

#: The fields of a job that a search sets itself, never copied from a
#: search field of the same name (``fields``) nor added by ia-resolve --field.
RESERVED_FIELDS = frozenset({"id", "file", "size", "updated"}) | EVENT_FIELDS
#: The search field holding the item's update dates (a list of ISO 8601
#: dates; the last is the metadata's item_last_updated: see iatools(7)).
UPDATE_DATES = "oai_updatedate"


def search_jobs(query, *, fields=(), session=None):
    """Yield the job of each item that archive.org's search ``query``
    finds, as ia-resolve --search writes it: ``{"id": ..., "size": ...,
    "updated": ...}``, plus the search ``fields`` named (``("title",)``)
    that an item has.

    ``session``: an ArchiveSession; by default one made from the user's ia
    configuration, as ia-resolve makes it (``IA_CONFIG_FILE`` or ia's usual
    places; proxies from the environment).  A result that is not an item
    is reported on stderr and skipped; a search that fails for good raises
    ``errors.IatoolsError``.
    """
    search = Search(query, session or sessions.build_session(sessions.SessionOptions()),
                    fields=fields)
    for jobs in search.pages():
        yield from jobs


class Search:
    """One search, read through the scrape API a page at a time.

    ``pages()`` yields the jobs of each page.  ``total``: the number of
    results archive.org announced with the first page (None before, or
    when it gave none); ``received``: the results so far; ``bad``: those
    that were no item (reported, skipped).
    """

    def __init__(self, query, session, *, fields=(), page_size=10000, retries=8):
        taken = RESERVED_FIELDS.intersection(fields)
        if taken:
            raise ValueError(f"fields {sorted(taken)}: set by the search itself")
        self.query = query
        self.session = session
        self.fields = tuple(fields)
        self.page_size = max(100, min(page_size, 10000))
        self.retries = retries
        self.total = None
        self.received = self.bad = 0

    def pages(self):
        """Yield the jobs of each page (a list), as the pages arrive; a
        search that fails for good raises ``errors.IatoolsError``."""
        url = sessions.base_url(self.session) + "/services/search/v1/scrape"
        params = {"q": self.query, "count": self.page_size,
                  "fields": ",".join(("identifier", "item_size", UPDATE_DATES) + self.fields)}
        while True:
            page = self._fetch_page(url, params)
            if self.received == 0 and isinstance(page.get("total"), int):
                self.total = page["total"]
            yield self._jobs(page["items"])
            if not page.get("cursor"):
                break
            params["cursor"] = page["cursor"]
        errors.debug(f"search {self.query!r}: {self.received} results")
        if self.total is not None and self.total != self.received:
            errors.warning(f"search {self.query!r}: archive.org announced {self.total} results "
                           f"but sent {self.received} (the index changed during the search?)")

    def _jobs(self, results):
        jobs = []
        for result in results:
            self.received += 1
            try:
                job = item_job(result.get("identifier"))
            except jsonl.BadLine as exc:
                jsonl.report_bad(f"search result {self.received}", exc)
                self.bad += 1
                continue
            size = _as_int(result.get("item_size"))
            if size is not None and size >= 0:
                job["size"] = size
            updated = _latest_date(result.get(UPDATE_DATES))
            if updated:
                job["updated"] = updated
            job.update((name, result[name]) for name in self.fields if name in result)
            jobs.append(job)
        return jobs

    def _fetch_page(self, url, params):
        """One scrape page, retrying this same cursor on transient failures."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return _request_page(self.session, url, params, first=self.received == 0)
            except _PageProblem as problem:
                if attempt > self.retries:
                    raise errors.IatoolsError(
                        f"search {params['q']!r} failed after {attempt} attempts: {problem}"
                    ) from None
                delay = problem.retry_after or backoff_delay(attempt)
                errors.warning(f"search page failed ({problem}); retrying in {delay:.1f}s")
                time.sleep(delay)


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


def _request_page(search_session, url, params, first):
    import requests
    import urllib3

    try:
        response = search_session.get(url, params=params, auth=sessions.s3_auth(search_session),
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


def _urllib3_reason(exc):
    """The urllib3 error inside a requests one (whose own text holds the
    repr of a connection object), or None."""
    import urllib3

    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # inside urllib3's MaxRetryError
    return reason if isinstance(reason, (urllib3.exceptions.HTTPError, OSError)) else None
