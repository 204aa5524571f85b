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

from iatools import errors

_FALSE_WORDS = {"false", "no", "off", "0"}


def add_session_options(parser):
    parser.add_argument("-c", "--config-file", metavar="FILE",
                        help="internetarchive config file (default: $IA_CONFIG_FILE, "
                             "then ia's usual places)")
    parser.add_argument("--insecure", action="store_true",
                        help="use http instead of https (as ia --insecure)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="connect and read timeout per request (default: %(default)s)")


def build_session(args, pool_size=10):
    """An ArchiveSession from the options of ``add_session_options``."""
    from internetarchive.config import get_config
    from internetarchive.session import ArchiveSession
    from requests.adapters import HTTPAdapter

    try:
        config = get_config(config_file=args.config_file)
        secure = not args.insecure and _is_true(config.get("general", {}).get("secure", True))
        session = ArchiveSession(config={"general": {"secure": secure}},
                                 config_file=args.config_file or "")
    except Exception as exc:  # the library raises many kinds for a bad file
        raise errors.UsageError(f"cannot use the ia configuration: {exc}") from None
    session.headers.pop("Connection", None)
    # Replace the library's retrying adapter (mounted for archive.org only):
    # iatools retries itself, the same way for every host.
    session.adapters.clear()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.timeout = args.timeout
    return session


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
