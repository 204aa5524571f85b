"""The JSONL contract: jobs, their keys, and the events made from them.

A job is a JSON object with at least ``id``; ``file``, ``size`` and
``destdir`` are optional; every other field belongs to the user and is
passed through unchanged.  An event is a job plus the fields in
``EVENT_FIELDS``.  See iatools(7).
"""

import os
import re
import time

from iatools.contract import jsonl
from iatools.contract.jsonl import BadLine

#: Fields an event adds to its job; stripped when an event is read as a job.
EVENT_FIELDS = frozenset({
    "event", "ts", "host", "pid", "files", "files_skipped", "bytes", "seconds",
    "attempts", "error", "retryable", "http_status", "failed_file", "failed_files",
    "files_unknown_size", "plan", "lock_owner", "reason", "files_removed", "files_deleted",
    "files_missing", "files_wrong_size", "files_wrong_md5", "files_extra",
})

#: Why a job failed: ``ia-joblog failed`` keeps these event fields on the
#: jobs it prints, in this order; a job read back drops them (they tell of
#: a past attempt, and must not pass into the events of the next).
FAILURE_FIELDS = ("error", "retryable", "http_status", "failed_files")

#: Letters, digits, ``_ - .``; at most 100 characters (archive.org's rule).
_IDENTIFIER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}")
#: This machine's name, as gethostname() gives it (without importing socket).
HOST = os.uname().nodename


def identifier_problem(identifier):
    """Why archive.org could never accept ``identifier``, or None."""
    if not isinstance(identifier, str):
        return f"identifier must be a string, not {type(identifier).__name__}"
    if not identifier:
        return "empty identifier"
    if len(identifier) > 100:
        return f"identifier longer than 100 characters ({len(identifier)})"
    if ".." in identifier:
        return f"identifier contains '..': {identifier!r}"
    if not _IDENTIFIER.fullmatch(identifier):
        return f"identifier has characters archive.org does not allow: {identifier!r}"
    return None


def file_name_problem(name):
    """Why a file name may not be used as a path below an item, or None."""
    if not isinstance(name, str) or not name:
        return "file name must be a non-empty string"
    if "\0" in name or "\\" in name:
        return f"file name contains a NUL or backslash: {name!r}"
    if name.startswith("/"):
        return f"absolute file name: {name!r}"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return f"file name with an empty, '.' or '..' component: {name!r}"
    return None


def validate_job(record):
    """Check the fields iatools reads; return the record or raise BadLine."""
    if "id" not in record:
        raise BadLine('job has no "id"')
    problem = identifier_problem(record["id"])
    if problem is None and "file" in record:
        problem = file_name_problem(record["file"])
    if problem is None and "size" in record:
        size = record["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            problem = f"\"size\" must be a whole number of bytes, not {size!r}"
    if problem is None and "destdir" in record and not _is_text(record["destdir"]):
        problem = f"\"destdir\" must be a non-empty string, not {record['destdir']!r}"
    if problem:
        raise BadLine(problem)
    return record


def _is_text(value):
    return isinstance(value, str) and value != ""


def job_from_record(record):
    """The job inside a record, which may be a job, an event, or a job that
    ``ia-joblog failed`` printed with why it failed."""
    if "event" in record:
        return {k: v for k, v in record.items() if k not in EVENT_FIELDS}
    if all(field not in record for field in FAILURE_FIELDS):
        return record
    return {k: v for k, v in record.items() if k not in FAILURE_FIELDS}


def timestamp(now=None):
    """UTC, ISO 8601 with milliseconds: sorts as text, reads as a date."""
    now = time.time() if now is None else now
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def make_event(kind, job, **details):
    """An event record: ``event`` and the key first (cheap to scan), the
    job's own fields, then when and where (``event_stamp``), and what
    happened.  iatools.contract.linegrammar matches and splices the bytes of this
    layout: change the two together."""
    event = {"event": kind, "id": job["id"]}
    if "file" in job:
        event["file"] = job["file"]
    event.update(job_from_record(job))
    event.update(event_stamp())
    event.update(details)
    return event


def is_failure(event):
    """Whether ``event`` ends its job in failure: ``failed``, or a dry
    run's ``planned`` with an ``error`` (an item that does not exist), as
    it would have failed without --dry-run."""
    return event["event"] == "failed" or (event["event"] == "planned" and "error" in event)


def event_stamp():
    """When and where an event happens, the fields after its job's."""
    return {"ts": timestamp(), "host": HOST, "pid": os.getpid()}


def job_of_line(line_number, line, default_destdir, emit):
    """The job on input line ``line_number``, its destdir filled in; BadLine
    for a bad line (see ``job_of_record``)."""
    return job_of_record(f"input line {line_number}", jsonl.parse_object(line),
                         default_destdir, emit)


def job_of_record(where, record, default_destdir, emit):
    """The job in ``record`` (read at ``where``: ``input line 3``, ``job
    3``), its destdir filled in; BadLine for a bad one.  A bad job whose id
    is usable is also failed through ``emit``, so that the log knows of it.
    The job may be ``record`` itself, changed: give a copy of a record
    that is not the caller's to change."""
    if not isinstance(record, dict):
        raise BadLine(f"not a JSON object (a {type(record).__name__})")
    job = job_from_record(record)
    try:
        validate_job(job)
    except BadLine as exc:
        if identifier_problem(job.get("id")) is None:
            emit(make_event("failed", job, error=f"{where}: {exc}", retryable=False))
        raise
    job["destdir"] = job.get("destdir") or default_destdir
    return job
