"""archive.org's endpoints: what each request gets, as a ``Reply``.

API host (``archive.org``, ``www.archive.org``): ``/metadata/ID``,
``/download/ID/NAME`` (302 to the storage host) and
``/services/search/v1/scrape``.  Storage hosts (``iaNNNNNN.us.archive.org``,
only the item's d1/d2): ``DIR/NAME`` with Range support.  Access-restricted
items need ``Authorization: LOW access:secret`` on both hosts.
"""

import email.utils
import json
import mimetypes
import re
import urllib.parse
from dataclasses import dataclass, field

from tests.emulator.metadata import metadata_body
from tests.emulator.ranges import Unsatisfiable, requested_range
from tests.emulator.scrape import scrape_page

API_HOSTS = ("archive.org", "www.archive.org")
SCRAPE_PATH = "/services/search/v1/scrape"
#: A name merely ending in archive.org too (an item's ``data_domain``).
_STORAGE_HOST = re.compile(r"ia\d{6}\.us\.[a-z.]*archive\.org")
_DOWNLOAD_PATH = re.compile(r"/download/([^/]+)/(.+)", re.DOTALL)
_STORAGE_PATH = re.compile(r"/\d+/items/([^/]+)/(.+)", re.DOTALL)


@dataclass
class Request:
    method: str
    host: str      # lower case, without port
    path: str      # percent-decoded, without the query string
    query: str     # raw query string
    headers: object  # email.message.Message
    body: bytes = b""
    tls: bool = False


class FileBody:
    """Bytes ``start``..``end`` of a file's content, sent in chunks."""

    def __init__(self, content, start, end):
        self.content, self.start, self.length = content, start, end - start

    def chunks(self, size):
        return self.content.chunks(self.start, self.start + self.length, size)


class BytesBody:
    def __init__(self, data):
        self.data, self.length = data, len(data)

    def chunks(self, size):
        view = memoryview(self.data)
        return (view[i:i + size] for i in range(0, self.length, size))


@dataclass
class Reply:
    status: int
    headers: list = field(default_factory=list)  # Content-Length is added when sent
    body: object = BytesBody(b"")
    file_key: str = None  # "ID/NAME" of a storage body, for stats


def request_kind(request):
    if request.path.startswith("/_emu/"):
        return "control"
    if request.host in API_HOSTS:
        if request.path == SCRAPE_PATH:
            return "scrape"
        for prefix, kind in (("/metadata/", "metadata"), ("/download/", "redirect")):
            if request.path.startswith(prefix):
                return kind
    elif _STORAGE_HOST.fullmatch(request.host):
        return "storage"
    return "other"


def text_reply(status, message, headers=()):
    return Reply(status, [("Content-Type", "text/plain; charset=utf-8"), *headers],
                 BytesBody(f"{message}\n".encode()))


def json_reply(document, status=200):
    return Reply(status, [("Content-Type", "application/json")],
                 BytesBody(json.dumps(document).encode()))


def status_reply(fault):
    headers = [] if fault.seconds is None else [("Retry-After", f"{fault.seconds:g}")]
    return text_reply(fault.status, f"emulated HTTP {fault.status}", headers)


def archive_reply(emu, request, kind, fault):
    """The reply to an archive.org request (any kind but control)."""
    if fault is not None and fault.name == "status":
        return status_reply(fault)
    if kind == "scrape":
        return _scrape(emu, request, fault)
    if request.method not in ("GET", "HEAD"):
        return text_reply(405, "method not allowed", [("Allow", "GET, HEAD")])
    if kind == "metadata":
        return _metadata(emu, request, fault)
    if kind == "redirect":
        return _redirect(emu, request)
    if kind == "storage":
        return _storage(emu, request)
    return text_reply(404, f"emulator: nothing at {request.host}{request.path}")


def _scrape(emu, request, fault):
    params = urllib.parse.parse_qs(request.query)
    if fault is not None and fault.name == "error":
        return json_reply({"error": "emulated search backend error"})
    document = scrape_page(emu.catalog, params, emu.settings.scrape_min_count)
    repeated = emu.catalog.repeated_in_search
    if repeated and any(r.get("identifier") == repeated for r in document.get("items", ())):
        document["items"].append({"identifier": repeated})  # as the real index sometimes does
    if fault is not None and fault.name == "total_null" and "total" in document:
        document["total"] = None
    return json_reply(document)


def _metadata(emu, request, fault):
    if fault is not None and fault.name == "error":
        return json_reply({"error": "emulated metadata backend error"})
    identifier = request.path[len("/metadata/"):].strip("/")
    content_type, body = metadata_body(emu.catalog.items.get(identifier))
    return Reply(200, [("Content-Type", content_type)], BytesBody(body))


def _redirect(emu, request):
    match = _DOWNLOAD_PATH.fullmatch(request.path)
    found = match and _find_file(emu, request, *match.groups())
    if not isinstance(found, tuple):
        return found or text_reply(404, "not found")
    item, catalog_file = found
    if catalog_file.name in item.on_the_fly:  # made here, on request
        return _file_reply(request, catalog_file)
    scheme = "https" if request.tls else "http"
    location = (f"{scheme}://{item.servers[item.data_node]}{item.dir}/"
                f"{_location_path(catalog_file.name, item.raw_utf8_location)}")
    if request.query:
        location += f"?{request.query}"
    return text_reply(302, "Found", [("Location", location)])


def _storage(emu, request):
    match = _STORAGE_PATH.fullmatch(request.path)
    found = match and _find_file(emu, request, *match.groups())
    if not isinstance(found, tuple):
        return found or text_reply(404, "not found")
    item, catalog_file = found
    if request.host not in item.servers or not request.path.startswith(item.dir + "/"):
        return text_reply(404, f"{item.identifier} is not on {request.host} at that path")
    if catalog_file.spec.gone or catalog_file.name in item.on_the_fly:
        return text_reply(404, f"{catalog_file.name} is not on {request.host}")
    return _file_reply(request, catalog_file)


def _location_path(name, raw_utf8):
    """The file's part of a Location: percent-encoded, or with its
    non-ASCII letters as raw UTF-8 bytes (headers go out as Latin-1)."""
    if not raw_utf8:
        return urllib.parse.quote(name, safe="/")
    quoted = "".join(c if ord(c) > 127 else urllib.parse.quote(c, safe="/") for c in name)
    return quoted.encode("utf-8").decode("latin-1")


def _find_file(emu, request, identifier, name):
    """(item, file), or the error Reply."""
    item = emu.catalog.items.get(identifier)
    if item is None or item.missing:
        return text_reply(404, f"item {identifier} not found")
    if item.dark:
        return text_reply(403, f"item {identifier} is dark")
    catalog_file = item.files.get(name) or item.on_the_fly.get(name)
    if catalog_file is None:
        return text_reply(404, f"no file {name!r} in {identifier}")
    authorized = emu.authorized(request.headers.get("Authorization"))
    if item.restricted and not authorized:
        return text_reply(403, f"item {identifier} is access-restricted; log in")
    if catalog_file.spec.private and not authorized:
        return text_reply(403, f"{name} is private")
    return item, catalog_file


def _file_reply(request, catalog_file):
    """The file, a range of it (Range, If-Range), or 304 Not Modified
    (If-Modified-Since); HEAD gets the same headers without the body."""
    size = catalog_file.size
    content_type = mimetypes.guess_type(catalog_file.name)[0] or "application/octet-stream"
    if catalog_file.mtime is None:  # made on request: no date, no ranges
        return Reply(200, [("Content-Type", content_type)],
                     FileBody(catalog_file.content, 0, size), _file_key(catalog_file))
    mtime = catalog_file.last_modified
    etag = f'"{mtime:x}-{size:x}"'  # nginx's form: mtime-size in hex
    last_modified = email.utils.formatdate(mtime, usegmt=True)
    headers = [
        ("Content-Type", content_type),
        ("Last-Modified", last_modified), ("ETag", etag), ("Accept-Ranges", "bytes"),
    ]
    key = _file_key(catalog_file)
    if _not_modified(request.headers.get("If-Modified-Since"), mtime):
        return Reply(304, headers[1:], BytesBody(b""), key)
    try:
        span = requested_range(request.headers.get("Range"), request.headers.get("If-Range"),
                               size, etag, last_modified)
    except Unsatisfiable:
        return text_reply(416, "range not satisfiable", [("Content-Range", f"bytes */{size}")])
    if span is None:
        return Reply(200, headers, FileBody(catalog_file.content, 0, size), key)
    start, end = span
    headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
    return Reply(206, headers, FileBody(catalog_file.content, start, end), key)


def _not_modified(if_modified_since, last_modified):
    """RFC 9110: not modified when Last-Modified is no later than the date
    asked about (an unreadable date is ignored)."""
    if not if_modified_since:
        return False
    try:
        since = email.utils.parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError):
        return False
    return last_modified <= since


def _file_key(catalog_file):
    return f"{catalog_file.identifier}/{catalog_file.name}"
