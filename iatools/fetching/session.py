"""HTTP sessions built from the user's internetarchive configuration.

The config file (``-c``, ``IA_CONFIG_FILE`` or ia's default places) gives
credentials, cookies and the host; proxies come from the standard
environment variables (``https_proxy``, ``http_proxy``, ``no_proxy``) and
``REQUESTS_CA_BUNDLE``, as for any ``requests`` user.

Two departures from a bare ``ArchiveSession``: ``secure = false`` in the
config file really selects http (the library keeps the string "False",
which is truthy), and connections are kept alive (the library asks for
``Connection: close`` on every request).
"""

import argparse
import configparser
import functools
import math
import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from iatools.base import errors

_FALSE_WORDS = {"false", "no", "off", "0"}
#: Seconds to connect, and to wait for each read, per request.
DEFAULT_TIMEOUT = 30.0


def add_session_options(parser):
    parser.add_argument("-c", "--config-file", metavar="FILE",
                        help="internetarchive config file (default: $IA_CONFIG_FILE, "
                             "then ia's usual places)")
    parser.add_argument("--insecure", action="store_true",
                        help="use http instead of https (as ia --insecure)")
    parser.add_argument("--timeout", type=timeout_argument, default=DEFAULT_TIMEOUT,
                        metavar="SECONDS",
                        help="connect and read timeout per request, more than 0 "
                             "(default: %(default)s)")


def timeout_argument(text):
    """Parse --timeout SECONDS (argparse ``type``): 0 makes a socket
    non-blocking, so that every request fails at once, and a socket refuses
    a negative, infinite or nan timeout with an error."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds more than 0")
    return seconds


@dataclass(frozen=True)
class SessionOptions:
    """The options of ``add_session_options``, for a session made without a
    command line (the Python API): the defaults a user's command has."""

    config_file: str = None
    insecure: bool = False
    timeout: float = DEFAULT_TIMEOUT


def check_config_file(args):
    """The config file named by -c or IA_CONFIG_FILE must be one that can be
    read: the library would quietly fall back to its defaults, sending the
    run to the real archive.org without the user's keys (``ia`` refuses a
    missing file too)."""
    path = args.config_file or os.environ.get("IA_CONFIG_FILE")
    if not path:
        return
    named = "-c" if args.config_file else "IA_CONFIG_FILE"
    if os.path.isdir(path):
        raise errors.UsageError(f"config file {path} (from {named}) is a directory")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise errors.UsageError(f"cannot read config file {path} (from {named}): "
                                f"{exc.strerror}") from None


def build_session(args, pool_size=10):
    """An ArchiveSession from the options of ``add_session_options``."""
    check_config_file(args)
    from internetarchive.config import get_config
    from internetarchive.session import ArchiveSession
    from requests.adapters import HTTPAdapter

    try:
        config = get_config(config_file=args.config_file)
        secure = not args.insecure and _is_true(config.get("general", {}).get("secure", True))
        session = ArchiveSession(config={"general": {"secure": secure}},
                                 config_file=args.config_file or "")
    except Exception as exc:  # the library raises many kinds for a bad file
        raise errors.UsageError(
            f"cannot use the ia configuration: {_config_problem(exc)}") from None
    session.headers.pop("Connection", None)
    # Replace the library's retrying adapter (mounted for archive.org only):
    # iatools retries itself, the same way for every host.
    session.adapters.clear()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.timeout = args.timeout
    return session


def _config_problem(exc):
    """What is wrong with the config file, naming lines but never quoting
    them: a line that does not parse may well hold a secret key."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"{exc.source}, line {exc.lineno}: a setting before any [section] header"
    if isinstance(exc, configparser.ParsingError):
        lines = ", ".join(str(lineno) for lineno, _ in exc.errors)
        return f"{exc.source}: cannot parse line {lines} (expected NAME = VALUE)"
    return str(exc)


def _is_true(value):
    return not (isinstance(value, str) and value.strip().lower() in _FALSE_WORDS) and bool(value)


def base_url(session):
    return f"{session.protocol}//{session.host}"


def s3_auth(session):
    """The LOW-header auth the library uses for downloads, when keys are set."""
    from internetarchive.auth import S3Auth

    if session.access_key and session.secret_key:
        return S3Auth(session.access_key, session.secret_key)
    return None


@dataclass
class ClientSettings:
    """What ia-fetch's HTTP client (``http.Connection``) takes from the ia
    configuration and the environment, worked out once per run."""

    headers: dict          # sent everywhere
    archive_headers: dict  # sent to archive.org hosts only: credentials
    ca_bundle: str
    timeout: float

    def proxy_for(self, url):
        """The proxy URL for ``url`` by the usual variables, or None.  Each
        item has storage hosts of its own, and requests' per-URL lookup scans
        the whole environment twice (measured: 8% of ia-fetch's CPU on small
        items); the variables are read once here."""
        import ipaddress
        import urllib.request

        parts = urlsplit(url)
        host = parts.hostname
        try:
            ipaddress.IPv4Address(host or "")
        except ValueError:
            proxies = self._environ_proxies
            if not host or urllib.request.proxy_bypass_environment(host, proxies):
                return None
            return proxies.get(parts.scheme) or proxies.get("all")
        # An address: requests' rules, which know no_proxy's CIDR ranges.
        from requests.utils import get_environ_proxies, select_proxy

        return select_proxy(url, get_environ_proxies(url))

    @functools.cached_property
    def _environ_proxies(self):
        import urllib.request

        return urllib.request.getproxies()

    @functools.cached_property
    def _tls_context(self):
        """One TLS context for every connection: given only a CA path,
        urllib3 builds a context and loads the CA bundle for each new
        connection (measured: 28 ms of CPU with certifi's bundle), and each
        item's storage node is a new connection."""
        import ssl

        if os.path.isdir(self.ca_bundle):
            return ssl.create_default_context(capath=self.ca_bundle)
        return ssl.create_default_context(cafile=self.ca_bundle)

    def pool_manager(self, proxy=None):
        import urllib3

        tls = {"ssl_context": self._tls_context}
        if proxy is None:
            return urllib3.PoolManager(num_pools=16, **tls)
        parts = urlsplit(proxy)
        proxy_headers = None
        if parts.username:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            proxy_headers = urllib3.make_headers(proxy_basic_auth=credentials)
        return urllib3.ProxyManager(proxy, num_pools=16, proxy_headers=proxy_headers, **tls)


def client_settings(session, timeout):
    """ClientSettings from an ArchiveSession: its User-Agent, and the
    credentials (S3 keys, login cookies) ``requests`` would send."""
    import requests
    from requests.cookies import get_cookie_header
    from requests.utils import DEFAULT_CA_BUNDLE_PATH

    probe = requests.Request("GET", base_url(session) + "/").prepare()
    auth = s3_auth(session)
    if auth is not None:
        auth(probe)
    archive_headers = {"Authorization": probe.headers.get("Authorization"),
                       "Cookie": get_cookie_header(session.cookies, probe)}
    ca_bundle = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                 or DEFAULT_CA_BUNDLE_PATH)
    return ClientSettings({"User-Agent": session.headers["User-Agent"], "Accept": "*/*"},
                          {k: v for k, v in archive_headers.items() if v}, ca_bundle, timeout)
