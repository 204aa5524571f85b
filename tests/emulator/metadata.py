"""The JSON document ``GET /metadata/{identifier}`` returns, as archive.org
shapes it: numbers inside ``files`` are strings, ``server``/``d1``/``d2``/
``dir`` say where the bytes live."""

import json
import time

#: What archive.org's metadata host sends when a backend fails mid-request.
NOT_JSON_BODY = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n"


def metadata_body(item):
    """(content type, body bytes) for ``item`` (None for no such item)."""
    if item is not None and item.metadata_not_json:
        return "text/html", NOT_JSON_BODY
    document = item_document(item) if item is not None else {}
    return "application/json", json.dumps(document).encode()


def item_document(item):
    if item.missing:
        return {}
    if item.dark:
        return {"created": item.created, "is_dark": True}
    d1, d2 = item.servers
    metadata = {
        "identifier": item.identifier, "title": item.title,
        "collection": item.collection, "mediatype": item.mediatype,
        "publicdate": _date(item.created),
    }
    if item.restricted:
        metadata["access-restricted-item"] = "true"
    files = [file_entry(f) for f in item.files.values()]
    return {
        "created": item.created, "d1": d1, "d2": d2, "dir": item.dir,
        "files": files, "files_count": len(files),
        "item_last_updated": item.updated, "item_size": item.item_size,
        "metadata": metadata, "server": d1, "uniq": item.uniq,
        "workable_servers": [d1, d2],
    }


def file_entry(catalog_file):
    entry = {
        "name": catalog_file.name, "source": catalog_file.source,
        "format": catalog_file.format, "mtime": str(catalog_file.mtime),
        "size": str(catalog_file.size),
    }
    entry.update(catalog_file.listed_digests())
    for name in catalog_file.spec.unlisted:
        entry.pop(name, None)
    if catalog_file.spec.private:
        entry["private"] = "true"
    return entry


def _date(timestamp):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))
