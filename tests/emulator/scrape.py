"""``/services/search/v1/scrape``: cursor paging over the catalog.

Queries are ``field:value`` terms joined by `` AND `` (fields: collection,
identifier, mediatype; values may be double-quoted and may hold ``*``
wildcards) or ``*:*``.  Anything else gets ``{"error": ...}`` with HTTP 200,
as archive.org answers.  Results are sorted by identifier; a ``sorts``
parameter is accepted only when identifier is its last key.
``total_only=true`` (what ``len(search)`` sends) gets just ``{"total": N}``.
``oai_updatedate`` is a list of ISO dates, as archive.org sends it (seen in
jjjake/internetarchive#423): the last is the item's ``item_last_updated``.
"""

import base64
import fnmatch
import json
import time

QUERY_FIELDS = ("collection", "identifier", "mediatype")
DEFAULT_COUNT = 5000
MAX_COUNT = 10000


class ScrapeError(Exception):
    """Becomes ``{"error": message}``."""


def scrape_page(catalog, params, min_count):
    """The response document for query-string ``params`` (a dict of lists)."""
    try:
        matches = _query_predicate(_param(params, "q"))
        fields = _fields(_param(params, "fields", "identifier"))
        _check_sorts(_param(params, "sorts", ""))
        count = _count(_param(params, "count", str(DEFAULT_COUNT)), min_count)
        offset = _decode_cursor(_param(params, "cursor", ""))
    except ScrapeError as exc:
        return {"error": str(exc)}
    found = [item for item in catalog.sorted_items() if matches(item)]
    if _param(params, "total_only", "false") == "true":  # what len(Search) asks
        return {"total": len(found)}
    page = found[offset:offset + count]
    document = {"items": [_result(item, fields) for item in page],
                "count": len(page), "total": len(found)}
    if offset + count < len(found):
        document["cursor"] = _encode_cursor(offset + count)
    return document


def _param(params, name, default=None):
    values = params.get(name)
    if not values:
        if default is None:
            raise ScrapeError(f"missing required parameter {name!r}")
        return default
    return values[0]


def _query_predicate(query):
    terms = [term.strip() for term in query.strip().split(" AND ")]
    tests = [_term_test(term) for term in terms]
    return lambda item: all(test(item) for test in tests)


def _term_test(term):
    if term == "*:*":
        return lambda item: True
    field, sep, value = term.partition(":")
    if not sep or field not in QUERY_FIELDS or not value:
        raise ScrapeError(f"unsupported query term {term!r} (emulator knows "
                          f"{', '.join(QUERY_FIELDS)} and *:*)")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    elif any(space in value for space in " \t"):
        raise ScrapeError(f"unsupported query {term!r} (only AND joins terms here)")
    return lambda item: fnmatch.fnmatchcase(getattr(item, field), value)


def _fields(text):
    return [name.strip() for name in text.split(",") if name.strip()] or ["identifier"]


def _check_sorts(text):
    keys = [key.strip().split()[0] for key in text.split(",") if key.strip()]
    if keys and keys[-1] != "identifier":
        raise ScrapeError("identifier must be the last sort key")


def _count(text, min_count):
    try:
        count = int(text)
    except ValueError:
        raise ScrapeError(f"count must be a number, not {text!r}") from None
    return max(min_count, min(MAX_COUNT, count))


def _encode_cursor(offset):
    raw = json.dumps({"offset": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor):
    if not cursor:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(cursor.encode()))["offset"])
    except (ValueError, KeyError, TypeError):
        raise ScrapeError(f"invalid cursor {cursor!r}") from None


def _result(item, fields):
    values = {
        "identifier": item.identifier, "title": item.title, "mediatype": item.mediatype,
        "collection": [item.collection], "item_size": item.item_size,
        "files_count": len(item.files),
        "oai_updatedate": [_iso(item.created), _iso(item.created), _iso(item.updated)],
    }
    return {name: values[name] for name in fields if name in values}


def _iso(timestamp):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
