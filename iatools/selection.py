"""Which files of an item a job downloads, and where each one goes.

The item and file model and the selection by format, glob and source are
the internetarchive library's (so a job selects exactly what ``ia download``
would); only the metadata request is ours, to retry it like any other.
"""

import os
from dataclasses import dataclass
from urllib.parse import quote

import orjson

from iatools.http import FetchError, response_error
from iatools.jobs import file_name_problem


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

    @property
    def is_files_xml(self):
        # archive.org rewrites _files.xml as the item changes: the md5 and
        # size listed for it never match the file served.
        return self.name == f"{self.identifier}_files.xml"

    @property
    def checksum_trusted(self):
        return self.md5 is not None and not self.is_files_xml


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
        raise FetchError("metadata response was not JSON", True) from None
    if not isinstance(metadata, dict):
        raise FetchError("metadata response was not a JSON object", True)
    if metadata == {}:
        raise FetchError(f"item {identifier} does not exist", False)
    if metadata.get("is_dark"):
        raise FetchError(f"item {identifier} is dark (not available)", False)
    files = metadata.get("files")
    if not isinstance(files, list) or not all(
            isinstance(f, dict) and isinstance(f.get("name"), str) for f in files):
        raise FetchError(f"item {identifier}: the metadata has no usable file list", True)
    return metadata


def plan_files(session, metadata, job, destdir, filters, flat):
    """FilePlans for a job, and problems with unsafe names in the metadata.

    ``flat`` puts files straight into ``destdir`` (--no-directories)."""
    from internetarchive.item import Item

    identifier = job["id"]
    item = Item(session, identifier, item_metadata=metadata)
    files = _select(item, job.get("file"), filters)
    base = destdir if flat else os.path.join(destdir, identifier)
    plans, unsafe = [], []
    for f in files:
        problem = file_name_problem(f.name)
        if problem:
            unsafe.append(problem)
            continue
        plans.append(FilePlan(
            identifier=identifier, name=f.name,
            url=f"{session.protocol}//{session.host}/download/{identifier}/{quote(f.name)}",
            path=os.path.join(base, f.name), size=_int_or_none(f.size),
            md5=f.md5 or None, mtime=f.mtime or None))
    return plans, unsafe


def _select(item, file_name, filters):
    if file_name is not None:
        matches = [f for f in item.get_files() if f.name == file_name]
        if not matches:
            raise FetchError(f"item {item.identifier} has no file {file_name!r}", False)
        return matches
    files = item.get_files(on_the_fly=filters.on_the_fly)
    if filters.formats:
        files = item.get_files(formats=filters.formats, on_the_fly=filters.on_the_fly)
    if filters.globs or filters.excludes:
        files = item.get_files(glob_pattern=filters.globs or ["*"],
                               exclude_pattern=filters.excludes, on_the_fly=filters.on_the_fly)
    return [f for f in files if _wanted(f, filters)]


def _wanted(f, filters):
    if not filters.download_history and f.name.startswith("history/"):
        return False
    if filters.sources and f.source not in filters.sources:
        return False
    return not (filters.exclude_sources and f.source in filters.exclude_sources)


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
