"""HTTP for ia-fetch: one retry policy for every request, per-host pacing.

The library's retry adapter covers only archive.org itself, not the storage
servers a download is redirected to, and sleeps a fixed time in the worker;
so ia-fetch decides here, for every host, when a refused request may go
again (its Retry-After, else backoff with jitter); the pool holds it back
until then, and its worker serves other requests.  What a refusal means for
its host, or for every host, is ``hostpacing``'s.
"""

import contextlib
import random
import re
import time
from urllib.parse import quote, urljoin, urlsplit

import urllib3

from iatools.base.backoff import TRANSIENT_STATUSES, backoff_delay, retry_after_seconds
from iatools.fetching.hostpacing import HostPaused


class FetchError(Exception):
    """Why a request or a file failed; its class says its kind.
    ``retryable``: trying again later could help; ``local``: the disk, not
    the network, failed (not retried at once: the next request would meet
    the same disk); ``no_space``: the disk (or the quota) is full."""

    retryable = True
    local = False
    no_space = False

    def __init__(self, message, http_status=None, retry_after=None):
        super().__init__(message)
        self.http_status = http_status
        self.retry_after = retry_after


class TransientError(FetchError):
    """A failure a later attempt may not meet: a refusal, a cut connection,
    a corrupt body."""


class PermanentError(FetchError):
    """A failure every attempt would meet: no such item, access denied."""

    retryable = False


class LocalDiskError(FetchError):
    """The local disk refused a write that it would refuse again."""

    retryable = False
    local = True


class DiskUnavailableError(LocalDiskError):
    """The local disk cannot be used now (not mounted, an I/O error), and
    may be by a later run."""

    retryable = True


class NoSpaceError(DiskUnavailableError):
    """The local disk (or the quota) is full."""

    no_space = True


class Cancelled(Exception):
    """The run is stopping (Ctrl-C, SIGTERM, --halt now)."""


PERMANENT_REASONS = {
    401: "access denied (HTTP 401): the item is restricted; check the credentials in the ia config",
    403: "access denied (HTTP 403): the item is restricted or dark",
    404: "not found (HTTP 404)",
    410: "gone (HTTP 410)",
}


def response_error(response):
    """The FetchError a response stands for, or None for a success."""
    status = response.status
    if status < 400:
        return None
    if status in TRANSIENT_STATUSES or status >= 500:
        retry_after = retry_after_seconds(response) if status in (429, 503) else None
        return TransientError(f"HTTP {status} {response.reason}".strip(), status, retry_after)
    reason = PERMANENT_REASONS.get(status, f"HTTP {status} {response.reason}".strip())
    return PermanentError(reason, status)


def describe_exception(exc):
    """A short, truthful description of a urllib3 or OS error, naming the
    host where the error knows it."""
    host = _host_of(exc)
    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        return f"cannot resolve {host}: {_errno_text(exc)}"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):  # before its base class
        return f"cannot connect to {host}: {_errno_text(exc)}"
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return f"connecting to {host} timed out"
    if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, TimeoutError)):
        return "read timed out (the server sent nothing for too long)"
    if isinstance(exc, urllib3.exceptions.ProxyError):
        original = getattr(exc, "original_error", None)
        if isinstance(original, (urllib3.exceptions.HTTPError, OSError)):
            return f"proxy error: {describe_exception(original)}"
        return f"proxy error: {_innermost(exc)}"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return f"TLS error: {_innermost(exc)}"
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return f"connection broken: {_innermost(exc)}"
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        return f"connection error: {_innermost(exc)}"
    return f"{type(exc).__name__}: {exc}"


def _host_of(exc):
    """The host a urllib3 error was met with ("the server" if unknown)."""
    # A failed connection keeps it as ``conn``; a timeout after it, its
    # pool as the first argument.
    holder = getattr(exc, "conn", None) or (exc.args[0] if exc.args else None)
    host = getattr(holder, "host", None)
    return host if isinstance(host, str) else "the server"


_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^)\]]+)")


def _errno_text(exc):
    """The system's words for a failed connection (``Connection refused``),
    without urllib3's repr of the connection object around them."""
    match = _ERRNO_TEXT.search(str(exc))
    return match.group(1).strip() if match else str(exc).rpartition(": ")[2][:120]


def _innermost(exc):
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    return f"{type(exc).__name__}: {exc}"[:300]


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class Connection:
    """A worker's own keep-alive HTTP client, on urllib3 directly: requests
    spends about 1 ms of CPU per request on environment scans, cookie jars
    and redirect bookkeeping (measured: a quarter of a small file's cost),
    and ia-fetch makes four requests per small item.  Redirects are
    followed here, so that every hop heeds the host pacing and
    credentials go to archive.org hosts only."""

    MAX_REDIRECTS = 5

    def __init__(self, client, pacing):
        self.client = client
        self.pacing = pacing
        self.last_host = None  # the host of the latest request: the one to blame
        self._timeout = urllib3.Timeout(connect=client.timeout, read=client.timeout)
        self._managers = {}  # proxy URL (or None) -> pool manager
        self._proxy_of_host = {}

    @contextlib.contextmanager
    def get(self, url, headers=None, compressed=False):
        """GET ``url`` following redirects; the response's body streams
        (``read1``) unless ``compressed``, which accepts gzip and decodes."""
        response = self._follow(url, headers or {}, compressed)
        try:
            yield response
        finally:
            _finish(response)

    def head(self, url):
        """The response to HEAD ``url`` (redirects followed): its headers
        and status, no body.  A FetchError for an error status."""
        response = self._follow(url, {}, False, "HEAD")
        _finish(response)
        error = response_error(response)
        if error:
            raise error
        return response

    def _follow(self, url, headers, compressed, method="GET"):
        for _ in range(self.MAX_REDIRECTS + 1):
            self.last_host = urlsplit(url).hostname
            self.pacing.check(self.last_host)
            response = self._request(url, headers, compressed, method)
            if not is_refusal(response.status):
                self.pacing.answered(self.last_host)
            location = response.headers.get("Location")
            if response.status not in REDIRECT_STATUSES or not location:
                return response
            _finish(response)
            url = urljoin(url, _location_url(location))
        raise TransientError(f"more than {self.MAX_REDIRECTS} redirects")

    def _request(self, url, headers, compressed, method):
        sent = dict(self.client.headers)
        if _is_archive_host(url):
            sent.update(self.client.archive_headers)
        sent["Accept-Encoding"] = "gzip, deflate" if compressed else "identity"
        sent.update(headers)
        return self._manager(url).urlopen(
            method, url, headers=sent, redirect=False, retries=False, preload_content=False,
            decode_content=compressed, timeout=self._timeout)

    def _manager(self, url):
        parts = urlsplit(url)
        host = (parts.scheme, parts.netloc)
        if host not in self._proxy_of_host:
            self._proxy_of_host[host] = self.client.proxy_for(url)
        proxy = self._proxy_of_host[host]
        if proxy not in self._managers:
            self._managers[proxy] = self.client.pool_manager(proxy)
        return self._managers[proxy]


def _location_url(location):
    """A Location header as a URL to request.  Header values arrive decoded
    as Latin-1; archive.org sometimes sends a file name in raw UTF-8 rather
    than percent-encoded, which read as Latin-1 and encoded again names
    another file.  So the bytes are read as UTF-8 and whatever is not
    URL-safe is percent-encoded, once (what requests, and so ia, does)."""
    try:
        location = location.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass  # not UTF-8: leave it as it came
    return quote(location, safe=_URL_SAFE)


#: What may stand unquoted in a URL, the percent sign of escapes included.
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


def _finish(response):
    """Give a connection back for reuse once its response is read, else
    close it: a body cut short leaves the connection unusable."""
    if response.connection is None:
        return  # urllib3 released it when the body ended
    try:
        if response.status >= 300:
            response.drain_conn()  # small error and redirect bodies
        elif response.length_remaining == 0:
            response.release_conn()
        else:
            response.close()
    except (urllib3.exceptions.HTTPError, OSError):
        response.close()


def _is_archive_host(url):
    host = urlsplit(url).hostname or ""
    return host == "archive.org" or host.endswith(".archive.org")


def is_refusal(status):
    """Does HTTP ``status`` say the server is overloaded or failing?"""
    return status is not None and (status in TRANSIENT_STATUSES or status >= 500)


def as_fetch_error(exc):
    """A FetchError for a failed attempt: itself, or a urllib3/OS error's."""
    if isinstance(exc, FetchError):
        return exc
    return TransientError(describe_exception(exc))


#: Seconds the first retry after a failure without Retry-After waits at
#: most.  A refusal says how long to wait in its Retry-After; what is left
#: to the backoff is resets and cut or corrupt bodies, no sign of overload,
#: and a file hit twice must not wait seconds more (measured: W5's tail went
#: from one to several seconds with a 1 s base, at 9 % of requests faulty).
RETRY_BASE = 0.25

#: What a failed attempt may raise.
ATTEMPT_ERRORS = (FetchError, urllib3.exceptions.HTTPError, OSError)


class RetryPolicy:
    """When a failed request may be sent again: no sooner than the
    server's Retry-After (plus up to a tenth, so that refused workers do not
    return in step), else after exponential backoff with jitter.  A refusal
    is also told to the host pacing, which may pause the host (a burst) or
    every host (a 429), even when this request is given up."""

    def __init__(self, retries, pacing):
        self.retries = retries
        self.pacing = pacing

    def delay(self, error, failures, host):
        """Seconds before attempt ``failures + 1`` after ``error``, or None
        when the request is given up (``host``: where it was refused)."""
        if error.retry_after is not None:
            delay = error.retry_after * random.uniform(1.0, 1.1)
        else:
            delay = backoff_delay(failures, base=RETRY_BASE)
        if host and is_refusal(error.http_status):
            self.pacing.refused(host, error.http_status, delay)
        if not error.retryable or error.local or failures > self.retries:
            return None
        return delay

    def run(self, attempt_once, connection):
        """Call ``attempt_once()``, a request on ``connection``, until it
        returns or fails for good, sleeping in between: for a caller with
        nothing else to do meanwhile (ia-verify's metadata requests)."""
        failures = 0
        while True:
            try:
                return attempt_once()
            except HostPaused as paused:
                time.sleep(max(paused.until - time.monotonic(), 0))
                continue
            except ATTEMPT_ERRORS as exc:
                error = as_fetch_error(exc)
            failures += 1
            delay = self.delay(error, failures, connection.last_host)
            if delay is None:
                raise error
            time.sleep(delay)
