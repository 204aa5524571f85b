"""Which files of an item a job downloads, and where each one goes.

The rules of the selection by format, glob and source are ``ia download``'s
(so a job selects what it would), applied to the raw metadata: the library
turns a missing size into 0 and scans the whole file list once per selected
file.  The metadata request is ours too, to retry it like any other.
"""

import fnmatch
import os
import re
import time
from dataclasses import dataclass
from urllib.parse import quote

import orjson

from iatools.contract.jobs import file_name_problem
from iatools.fetching.http import PermanentError, TransientError, response_error


def add_selection_options(parser):
    """ia download's file selection options (ia-fetch, ia-verify)."""
    selection = parser.add_argument_group("file selection (as ia download)")
    selection.add_argument("-g", "--glob", action="append", default=[], metavar="PATTERN",
                           help="only files matching PATTERN; | separates alternatives "
                                "(repeatable)")
    selection.add_argument("-e", "--exclude", action="append", default=[], metavar="PATTERN",
                           help="skip files matching PATTERN (repeatable)")
    selection.add_argument("-f", "--format", action="append", default=[], metavar="FORMAT",
                           help="only files of this format, e.g. 'JPEG' (repeatable)")
    selection.add_argument("--source", action="append", default=[], metavar="SOURCE",
                           help="only files from this source: original, derivative, "
                                "metadata (repeatable)")
    selection.add_argument("--exclude-source", action="append", default=[], metavar="SOURCE",
                           help="skip files from this source (repeatable)")
    selection.add_argument("--on-the-fly", action="store_true",
                           help="also fetch on-the-fly derivatives (EPUB, MOBI, DAISY, MARCXML)")
    selection.add_argument("--download-history", action="store_true",
                           help="also fetch files under history/ (skipped by default)")


def filters_from_args(args):
    return Filters(args.format, args.glob, args.exclude, args.source, args.exclude_source,
                   args.on_the_fly, args.download_history)


@dataclass
class Filters:
    formats: list
    globs: list
    excludes: list
    sources: list
    exclude_sources: list
    on_the_fly: bool
    download_history: bool


@dataclass
class FilePlan:
    """One file to fetch: where from, where to, and what it must be."""

    identifier: str
    name: str
    url: str
    path: str
    size: object  # int, or None when the metadata has no size (on-the-fly files)
    md5: object
    mtime: object
    private: bool = False  # "private": "true": only its uploader may fetch it
    item_restricted: bool = False  # the item is access-restricted

    @property
    def is_files_xml(self):
        # archive.org rewrites _files.xml as the item changes: the md5 and
        # size listed for it never match the file served.
        return self.name == f"{self.identifier}_files.xml"

    @property
    def checksum_trusted(self):
        # The torrent is regenerated as the item changes too, and the md5
        # listed for it is often stale (a known archive.org defect): a
        # mismatch would fail the item on every run.
        return (self.md5 is not None and not self.is_files_xml
                and self.name != f"{self.identifier}_archive.torrent")


def fetch_metadata(connection, base_url, identifier):
    """The item's metadata; FetchError for missing, dark or broken items."""
    with connection.get(f"{base_url}/metadata/{identifier}", compressed=True) as response:
        error = response_error(response)
        if error:
            raise error
        body = response.data
    try:
        metadata = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise TransientError("metadata response was not JSON") from None
    if not isinstance(metadata, dict):
        raise TransientError("metadata response was not a JSON object")
    if metadata == {}:
        raise PermanentError(f"item {identifier} does not exist")
    if metadata.get("is_dark"):
        raise PermanentError(f"item {identifier} is dark (not available)")
    files = metadata.get("files")
    if not isinstance(files, list) or not all(
            isinstance(f, dict) and isinstance(f.get("name"), str) for f in files):
        raise TransientError(f"item {identifier}: the metadata has no usable file list")
    return metadata


def add_version(job, metadata):
    """Give a job without a version (an item list, plain ids) the one the
    metadata states, so that its outcome records what was fetched or
    checked (iatools(7), ITEM VERSIONS)."""
    updated = metadata.get("item_last_updated")
    if "updated" not in job and isinstance(updated, int):
        job["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(updated))
    size = metadata.get("item_size")
    if "size" not in job and "file" not in job and isinstance(size, int):
        job["size"] = size


def plan_files(session, metadata, job, destdir, filters, flat):
    """FilePlans for a job, and problems with unsafe names in the metadata
    (``(name, problem)`` pairs: the other files are still planned).

    ``flat`` puts files straight into ``destdir`` (--no-directories)."""
    identifier = job["id"]
    about = metadata.get("metadata")
    restricted = isinstance(about, dict) and _is_true(about.get("access-restricted-item"))
    base = destdir if flat else os.path.join(destdir, identifier)
    plans, unsafe = [], []
    for entry in select_entries(identifier, metadata["files"], job.get("file"), filters):
        name = entry["name"].strip("/")  # as the library does: "/a" is fetched as "a"
        problem = file_name_problem(name)
        if problem:
            unsafe.append((name, problem))
            continue
        plans.append(FilePlan(
            identifier=identifier, name=name,
            url=f"{session.protocol}//{session.host}/download/{identifier}/{quote(name)}",
            path=os.path.join(base, name), size=_whole_number(entry.get("size")),
            md5=entry.get("md5") or None, mtime=_mtime(entry.get("mtime")),
            private=_is_true(entry.get("private")), item_restricted=restricted))
    return plans, unsafe


def listed_names(identifier, metadata):
    """Every name a file of the item may have on disk: those listed (as
    plan_files names them) and the on-the-fly derivatives."""
    names = {f["name"].strip("/") for f in metadata["files"]}
    return names.union(e["name"] for e in on_the_fly_entries(identifier))


def select_entries(identifier, entries, file_name, filters):
    """The raw file entries a job wants, in listing order, each once.

    The rules are ``ia download``'s (``Item.download``): a glob replaces
    the format filter, history/ and the sources filter what is left.  Two
    differences, both documented in ia-fetch(1): --exclude applies without
    --glob too, and a file two patterns match is fetched once.  One pass
    over the list: the library looks each selected name up again in the
    whole list (``get_file``), quadratic in the item's size."""
    if file_name is not None:
        matches = [e for e in entries if e["name"] == file_name]
        if not matches:
            raise PermanentError(f"item {identifier} has no file {file_name!r}")
        return matches[:1]
    if filters.on_the_fly:
        entries = entries + on_the_fly_entries(identifier)
    wanted = _name_test(filters)
    selected, seen = [], set()
    for entry in entries:
        name = entry["name"]
        if name not in seen and wanted(name, entry) and _wanted_source(entry, filters):
            seen.add(name)
            selected.append(entry)
    return selected


def on_the_fly_entries(identifier):
    """The derivatives archive.org makes on request, never listed (the
    library's list: Item.get_files)."""
    return [{"name": name, "format": format_name} for format_name, name in (
        ("EPUB", f"{identifier}.epub"), ("MOBI", f"{identifier}.mobi"),
        ("DAISY", f"{identifier}_daisy.zip"), ("MARCXML", f"{identifier}_archive_marc.xml"))]


def _name_test(filters):
    """``wanted(name, entry)`` for the glob, format and exclude filters."""
    excluded = _matcher(filters.excludes)
    if filters.globs:
        included = _matcher(filters.globs)
        return lambda name, entry: included(name) and not excluded(name)
    if filters.formats:
        formats = set(filters.formats)
        return lambda name, entry: entry.get("format") in formats and not excluded(name)
    return lambda name, entry: not excluded(name)


def _matcher(patterns):
    """A test for names matching any of ``patterns`` (``|`` separates
    alternatives), as the library's fnmatch does: case-sensitive here,
    ``*`` matching ``/`` too."""
    alternatives = [p for pattern in patterns for p in pattern.split("|")]
    if not alternatives:
        return lambda name: False
    regex = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in alternatives))
    return lambda name: regex.match(name) is not None


def _wanted_source(entry, filters):
    if not filters.download_history and entry["name"].startswith("history/"):
        return False
    source = entry.get("source")
    if filters.sources and source not in filters.sources:
        return False
    return not (filters.exclude_sources and source in filters.exclude_sources)


def _whole_number(value):
    """A size as archive.org lists it ("5009"); None when it lists none:
    unknown is not 0 (on-the-fly derivatives have no size)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def _mtime(value):
    try:
        return float(value) or None
    except (TypeError, ValueError):
        return None


def _is_true(value):
    return value is True or value == "true"
