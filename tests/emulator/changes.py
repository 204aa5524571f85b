"""Items changing between runs, as archive.org items do: a file added, a
file replaced (same size or not), a file removed, a new item.  Each change
moves the item's ``updated`` (its ``item_last_updated`` and the last
``oai_updatedate`` of search results) to now; ``item_size`` follows the
files.  A replaced file gets new bytes and a new mtime, as a re-upload does,
and so do the item's _files.xml and torrent, which archive.org rewrites.

In-process: ``add_file(emu.catalog, "demo-0001", FileSpec("new.txt", 100))``;
out of process: ``POST /_emu/change`` with ``{"change": "add_file", "id": ...,
"name": ..., "size": ...}`` (see ``apply``).
"""

import dataclasses
import time

from tests.emulator.catalog import CatalogFile, FileSpec
from tests.emulator.content import FileContent


def add_file(catalog, identifier, spec):
    item = catalog.items[identifier]
    if spec.name in item.files:
        raise ValueError(f"{identifier} already has {spec.name!r}")
    now = _touch(item)
    item.files[spec.name] = CatalogFile(identifier, spec, now)
    return item.files[spec.name]


def replace_file(catalog, identifier, name, size=None):
    """New bytes for ``name`` (of ``size``, by default the same size)."""
    item = catalog.items[identifier]
    replaced = item.files[name]
    _new_bytes(replaced, replaced.size if size is None else size, _touch(item))
    return replaced


def remove_file(catalog, identifier, name):
    item = catalog.items[identifier]
    del item.files[name]
    _touch(item)


def add_item(catalog, identifier, specs, collection="demo"):
    item = catalog.add_item(identifier, specs, collection=collection)
    item.updated = _now()
    return item


def skew_last_modified(catalog, seconds, identifiers=None):
    """Make Last-Modified differ from the listed mtime by ``seconds`` (no
    change to the item: archive.org shows this on unchanged files)."""
    for item in catalog.sorted_items():
        if identifiers is None or item.identifier in identifiers:
            for catalog_file in item.files.values():
                catalog_file.spec = dataclasses.replace(catalog_file.spec, skew=seconds)


CHANGES = {
    "add_file": lambda catalog, d: add_file(catalog, d["id"], FileSpec(d["name"], int(d["size"]))),
    "replace_file": lambda catalog, d: replace_file(catalog, d["id"], d["name"], d.get("size")),
    "remove_file": lambda catalog, d: remove_file(catalog, d["id"], d["name"]),
    "add_item": lambda catalog, d: add_item(
        catalog, d["id"], [FileSpec(f["name"], int(f["size"])) for f in d["files"]],
        d.get("collection", "demo")),
    "skew_last_modified": lambda catalog, d: skew_last_modified(
        catalog, int(d["seconds"]), d.get("ids")),
}


def apply(catalog, document):
    """One change described as JSON (``POST /_emu/change``)."""
    change = document.get("change")
    if change not in CHANGES:
        raise ValueError(f"unknown change {change!r} (known: {', '.join(CHANGES)})")
    CHANGES[change](catalog, document)


def _touch(item):
    """Move the item's update date to now; archive.org rewrites the item's
    _files.xml and torrent too."""
    item.updated = max(_now(), item.updated + 1)
    for catalog_file in item.files.values():
        if catalog_file.is_regenerated:
            _new_bytes(catalog_file, catalog_file.size, item.updated)
    return item.updated


def _new_bytes(catalog_file, size, mtime):
    """Bytes of their own, not those of an earlier upload under this name."""
    catalog_file.size, catalog_file.mtime = size, mtime
    key = f"{catalog_file.identifier}/{catalog_file.name}@{mtime}".encode()
    catalog_file.content = FileContent(key, size)


def _now():
    return int(time.time())
