"""HTTP for ia-fetch: one retry policy for every request, shared pauses.

The library's retry adapter covers only archive.org itself, not the storage
servers a download is redirected to, and sleeps a fixed time; so ia-fetch
retries here, for every host, with backoff and jitter.  A 429 or 503 with
Retry-After pauses *all* workers (archive.org blocks clients that keep
hammering), through one shared ``PauseGate``.
"""

import threading
import time
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from iatools.backoff import TRANSIENT_STATUSES, backoff_delay, retry_after_seconds


class FetchError(Exception):
    """Why a request or a file failed.  ``retryable`` says if trying again
    later could help; a ``local`` error (the disk, not the network) is not
    retried at once, since the next request would meet the same disk."""

    def __init__(self, message, retryable, http_status=None, retry_after=None, local=False):
        super().__init__(message)
        self.retryable = retryable
        self.http_status = http_status
        self.retry_after = retry_after
        self.local = local


class Cancelled(Exception):
    """The run is stopping (Ctrl-C, SIGTERM, --halt now)."""


class PauseGate:
    """A moment before which no worker may send a request."""

    def __init__(self, cancel):
        self._cancel = cancel
        self._lock = threading.Lock()
        self._until = 0.0

    def pause(self, seconds):
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def wait(self):
        while True:
            with self._lock:
                remaining = self._until - time.monotonic()
            if remaining <= 0:
                return
            if self._cancel.wait(remaining):
                raise Cancelled()

    def sleep(self, seconds):
        """Sleep for a backoff, but wake at once when the run is cancelled."""
        if self._cancel.wait(seconds):
            raise Cancelled()


PERMANENT_REASONS = {
    401: "access denied (HTTP 401): the item is restricted; check the credentials in the ia config",
    403: "access denied (HTTP 403): the item is restricted or dark",
    404: "not found (HTTP 404)",
    410: "gone (HTTP 410)",
}


def response_error(response):
    """The FetchError a response stands for, or None for a success."""
    status = response.status_code
    if status < 400:
        return None
    if status in TRANSIENT_STATUSES or status >= 500:
        retry_after = retry_after_seconds(response) if status in (429, 503) else None
        return FetchError(f"HTTP {status} {response.reason}".strip(), True, status, retry_after)
    reason = PERMANENT_REASONS.get(status, f"HTTP {status} {response.reason}".strip())
    return FetchError(reason, False, status)


def describe_exception(exc):
    """A short, truthful description of a requests, urllib3 or OS error."""
    if isinstance(exc, (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError,
                        TimeoutError)):
        return "read timed out (the server sent nothing for too long)"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError,
                        urllib3.exceptions.ProtocolError)):
        return f"connection broken mid-body: {_innermost(exc)}"
    if isinstance(exc, (requests.exceptions.ConnectionError, OSError)):
        return f"connection error: {_innermost(exc)}"
    return f"{type(exc).__name__}: {exc}"


def _innermost(exc):
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    return f"{type(exc).__name__}: {exc}"[:300]


class Connection:
    """A worker's keep-alive session, with redirects followed by hand so
    that every hop waits at the shared gate and credentials go to
    archive.org hosts only."""

    MAX_REDIRECTS = 5

    def __init__(self, session, gate, auth, timeout):
        self.session = session
        self.gate = gate
        self.auth = auth
        self.timeout = timeout

    def get(self, url, **kwargs):
        for _ in range(self.MAX_REDIRECTS + 1):
            self.gate.wait()
            response = self.session.get(url, allow_redirects=False, timeout=self.timeout,
                                        auth=self.auth if _is_archive_host(url) else None,
                                        **kwargs)
            if not response.is_redirect:
                return response
            url = urljoin(url, response.headers["Location"])
            response.close()
            kwargs.pop("params", None)  # the redirect's Location carries them
        raise FetchError(f"more than {self.MAX_REDIRECTS} redirects", True)


def _is_archive_host(url):
    host = urlsplit(url).hostname or ""
    return host == "archive.org" or host.endswith(".archive.org")


class RetryPolicy:
    """Retries with backoff; 429/503 Retry-After pauses every worker."""

    def __init__(self, retries, gate):
        self.retries = retries
        self.gate = gate
        self.attempts = 0

    def run(self, attempt_once):
        """Call ``attempt_once()`` until it returns or fails for good."""
        failures = 0
        while True:
            self.attempts += 1
            try:
                return attempt_once()
            except requests.RequestException as exc:
                error = FetchError(describe_exception(exc), True)
            except FetchError as exc:
                error = exc
            failures += 1
            if not error.retryable or error.local or failures > self.retries:
                raise error
            if error.retry_after:
                self.gate.pause(error.retry_after)
            else:
                self.gate.sleep(backoff_delay(failures))
