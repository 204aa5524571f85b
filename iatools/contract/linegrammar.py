"""The bytes of a job or event line: the one owner of their grammar.

``jobs.make_event`` writes an event as compact JSON with ``"event"`` and
the key first, the job's own fields, then ``"ts"``, ``"host"``, ``"pid"``
(``jobs.event_stamp``) and what happened (iatools(7)).  The readers do not
parse most lines: they match and splice those bytes with the regular
expressions here, a whole chunk at a time, and give any line of another
shape to the full parser.  A change to the layout is made here and in
``make_event``, nowhere else.

The key of a job is matched as the bytes of its JSON text: ``ID`` for an
item job, ``ID","file":"NAME`` for a file job -- exactly what a compact JSON
line holds between the quotes when ``"file"`` follows ``"id"``.  So a
regular expression takes the key straight out of a line (``KEY``), and a
parsed job gives the same bytes (``key_bytes``).  An identifier holds no
quote, so the form is unambiguous.
"""

import re
from functools import partial

import orjson

from iatools.base.lazynumpy import np
from iatools.contract import jsonl
from iatools.contract.jobs import EVENT_FIELDS, event_stamp, job_from_record, validate_job
from iatools.contract.jsonl import BadLine, split_lines, within_line_limit

# -- keys ------------------------------------------------------------------

#: An identifier as archive.org allows it (``jobs.identifier_problem``),
#: written out so that a regular expression can judge it in place.
_ID_CHARS = rb'[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}'
_ID = rb'(?![^"]*\.\.)' + _ID_CHARS
#: A file name that ``jobs.file_name_problem`` accepts and JSON holds as it
#: is: no escapes (a backslash sends the line to the full parser), no empty,
#: ``.`` or ``..`` component, no leading slash.
_COMPONENT = rb'(?!\.\.?[/"])[^"\\/\x00-\x1f]+'
_FILE = _COMPONENT + rb'(?:/' + _COMPONENT + rb')*'
#: What stands between the identifier and the file name in a file job's key.
_FILE_IN_KEY = b'","file":"'


def _key(identifier, group=True):
    """``"id":"KEY"`` with the key as group 1 (or as no group); a "file"
    that is not a plain string (``"file":null``) must go to the full
    parser, which rejects it."""
    return (rb'"id":"(' + (b"" if group else b"?:") + identifier + rb'(?:' + _FILE_IN_KEY
            + _FILE + rb')?)"(?!,"file":)')


KEY = _key(_ID)
#: KEY without its look for ".." in the identifier, a fifth of the time a
#: plain job line takes to match: ``plain_chunk`` looks for ".." in the
#: whole chunk at once instead.
_CHUNK_KEY = _key(_ID_CHARS)


def key_bytes(job):
    """The key of a validated job or event, as ``KEY`` takes it from a line."""
    key = job["id"].encode()
    if "file" in job:
        key += _FILE_IN_KEY + job["file"].encode("utf-8", "surrogatepass")
    return key


def key_parts(key):
    """The identifier and the file name (b"" for an item job) of a key."""
    identifier, _, name = key.partition(_FILE_IN_KEY)
    return identifier, name


def key_identifier(key):
    """The identifier of a key, quicker than ``key_parts`` (no quote in it)."""
    return key.partition(b'"')[0]


def describe_key(key):
    """A key as people read it: ``ID`` or ``ID/FILE``."""
    return key.replace(_FILE_IN_KEY, b"/").decode("utf-8", "replace")


# -- plain values and job lines ---------------------------------------------

#: What a plain line holds besides its key: field names and strings in
#: printable ASCII without escapes, whole numbers, true, false and null --
#: lines that the full parser would give back byte for byte, so they can be
#: judged a whole chunk at a time (see PERFORMANCE in ia-joblog(1)).  Their
#: repeats are possessive (``*+``): what they leave must start with a
#: character they do not match, so giving some back could never help, and
#: the engine keeps no state to try: a sixth faster over a chunk of events.
PLAIN_STRING = rb'"[ !#-\[\]-~]*+"'
PLAIN_VALUE = rb"(?:" + PLAIN_STRING + rb"|0|-?[1-9][0-9]{0,17}+|true|false|null)"
SIZE = rb"0|[1-9][0-9]{0,17}"


def whole_numbers(digits):
    """Numbers that a regular expression took out of lines (``SIZE``, no
    b""), as an int64 numpy array: numpy reads them in half the time that
    int() of each takes."""
    return np.fromstring(b" ".join(digits), np.int64, sep=" ")


def plain_job_line(*known_fields, reserved=(b"id", b"file", b"size", b"destdir", b"event")):
    """The regular expression of a plain job line: ``{`` and the key (group
    1), then any of ``known_fields`` (patterns starting with their comma) and
    plain fields whose name is not ``reserved``, then ``}``.  Only for the
    chunks that ``plain_chunk`` accepts."""
    user_field = (rb',"(?!(?:' + b"|".join(reserved) + rb')")[ !#-\[\]-~]*+":' + PLAIN_VALUE)
    return re.compile(rb"^\{" + _CHUNK_KEY + rb"(?:" + b"|".join(known_fields + (user_field,))
                      + rb")*+\}$", re.MULTILINE)


#: Does a text hold ".."?  The regular expression engine finds it in event
#: lines, which have a dot in most fields, 2.5 times faster than ``in``.
has_dots = re.compile(rb"\.\.").search


def plain_chunk(data):
    """May ``plain_job_line`` expressions judge the lines of ``data``?  Only
    ASCII without ".." (the full parser takes the rest, and reports what is
    wrong), no line over the limit."""
    return data.isascii() and not has_dots(data) and within_line_limit(data)


def all_lines_closed(lines, data):
    """Does every one of the ``lines`` of the chunk end with ``}``, and none
    pass the line limit?  A line torn by a crash does not end with ``}``; it
    and a line too long must go to the full parser to be reported."""
    return data.count(b"}\n") == lines and within_line_limit(data)


def job_lines(data):
    """The lines of a chunk of whole closed lines, each without its closing
    ``}`` and newline: ready to take more fields and a new ending."""
    lines = data.split(b"}\n")
    lines.pop()
    return lines


def reclose(line, ending):
    """A whole job line (no line ending) with ``ending`` (more fields, ``}``
    and a newline) in place of its closing brace."""
    return line.rstrip()[:-1] + ending


# -- the lines of a chunk, parsed ---------------------------------------------

def jobs_in_chunk(first_line_number, data, on_bad_line):
    """Yield ``(line, record, job)`` for each job in ``data``, whole lines
    read from a job stream (CRLF accepted; blank lines and comments
    skipped), ``record`` being the line's object and ``job`` the job made of
    it.  A bad line is reported on stderr with its number, which then goes
    to ``on_bad_line``."""
    return jsonl.parse_lines(enumerate(split_lines(data), first_line_number), _job_of_line,
                             on_bad_line)


def _job_of_line(line_number, line):
    record = jsonl.parse_object(line)
    return line, record, validate_job(job_from_record(record))


def parse_event(line, not_an_event='no "event" field'):
    """The event of a line, validated as a job and checked to be an event;
    raise BadLine (with ``not_an_event`` for a job)."""
    event = validate_job(jsonl.parse_object(line))
    if not isinstance(event.get("event"), str):
        raise BadLine(not_an_event)
    return event


def line_starts(data):
    """The offset of each line of a chunk, and of its end."""
    return [0] + [m.end() for m in re.finditer(b"\n", data)]


# -- event lines, found by their beginning ------------------------------------
# Each of these patterns is searched for in ``marked(chunk)``, so that every
# line starts with a newline and a match can only begin a line.

def marked(data):
    """A chunk as the patterns of event lines search it."""
    return b"\n" + data


def mentions(data):
    """How often a chunk names a completion, and a failure: where the
    patterns find fewer, a line has another shape (or a field holds the
    word), and the chunk goes to the full parser."""
    return data.count(b"completed") + data.count(b"verified"), data.count(b'"failed"')


#: Every event iatools writes starts with this.
EVENT_START = b'{"event":'
DONE_EVENTS = ("completed", "verified")
#: A completion: "completed" (ia-fetch) or "verified" (ia-verify); group 1: the key.
DONE_LINE = re.compile(rb'\n\{"event":"(?:completed|verified)",' + KEY + rb"[,}]")
#: Any other event; groups: its kind and its key.
OPEN_LINE = re.compile(rb'\n\{"event":"(?!completed"|verified")([a-z_]+)",' + KEY + rb"[,}]")
#: Any event; groups: its kind and its key.
EVENT_LINE = re.compile(rb'\n\{"event":"([a-z_]+)",' + KEY + rb"[,}]")
#: A failed event, whole (group 1).
FAILED_LINE = re.compile(rb'\n(\{"event":"failed",[^\n]*)')
#: A queued event's beginning (counted in a chunk, not marked).
QUEUED_START = b'{"event":"queued",'


def queued_only(lines, data):
    """Does every one of the ``lines`` of a chunk begin as a queued event?
    (Counted at the beginnings of lines: a line glued after another one
    does not count.)"""
    # (No count when the first line is not one: a chunk of other events
    # then costs no pass over its bytes, 0.26 ns a byte.)
    return (data.startswith(QUEUED_START)
            and data.count(b"\n" + QUEUED_START) == lines - 1)


def outcome_with_fields(kinds, *fields):
    """An event of one of ``kinds`` whose job fields are plain, matched up
    to its "ts": group 1 the key, then the groups of the ``fields``
    (``(name, value pattern)``, each pattern with a group; b"" when
    absent).  (A field named "ts" ends the job: matching it as a job field
    would try every field after.)"""
    names = b"|".join(name + b'"' for name, _ in fields)
    known = b"".join(rb',"' + name + rb'":' + value + rb"|" for name, value in fields)
    return _DotAware(lambda key: re.compile(
        rb'\n\{"event":"(?:' + kinds + rb')",' + key + rb"(?:" + known + rb',"(?!' + names
        + rb'|ts")[ !#-\[\]-~]*+":' + PLAIN_VALUE + rb')*+,"ts":"'))


class _DotAware:
    """A pattern with a key in it (``pattern_of(key)``), which searches a
    text without the look for ".." in each identifier when the text holds
    none at all: a tenth to a third faster."""

    def __init__(self, pattern_of, keys=(KEY, _CHUNK_KEY)):
        strict, without_dots = keys
        self._strict = pattern_of(strict)
        self._without_dots = pattern_of(without_dots)

    def findall(self, text, dots=None):
        """``findall`` of ``text``, judged strictly if it holds ".." (or
        as ``dots`` says)."""
        strict = has_dots(text) if dots is None else dots
        return (self._strict if strict else self._without_dots).findall(text)

    def finditer(self, text):
        return (self._strict if has_dots(text) else self._without_dots).finditer(text)

    def fullmatch(self, line):
        return self._strict.fullmatch(line)

    def match(self, text):
        return self._strict.match(text)


# Timestamps compare as strings only in this exact form; anything else a
# hand-edited log holds is treated as unknown rather than trusted.
TS = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z"
#: The "ts" of a line (group 1), the last one in it.
LAST_TS = re.compile(rb'.*,"ts":"(' + TS + rb')"')
#: The "bytes" of a completion, found from the end of the line, where the
#: writers put it.
COMPLETED_BYTES = re.compile(rb'\n\{"event":"completed",[^\n]*,"bytes":([0-9]+)[,}]')
#: The minute of a completion (its "ts" cut after the minutes) and its
#: "bytes", if it has them.
MINUTE = len("2026-12-06T19:42")
COMPLETED_WHEN = re.compile(
    rb'\n\{"event":"completed",[^\n]*?,"ts":"(\d{4}-\d\d-\d\dT\d\d:\d\d):\d\d(?:\.\d{1,6})?Z"'
    rb'(?:[^\n]*,"bytes":([0-9]+)[,}])?')

#: Events that undo a completion: ia-verify found the files damaged, or skip
#: found the item changed upstream (a queued event with this reason).
#: (Either word quoted anywhere in a chunk sends it to the full parser.)


def reopens(event):
    """Does this event make its key no longer completed?"""
    kind = event["event"]
    return kind == "damaged" or (kind == "queued" and event.get("reason") == "changed")


def may_reopen(data):
    """May a chunk hold an event that ``reopens``?  Such chunks are read
    line by line, in order (they are rare: an audit's damage, an upstream
    change)."""
    # Two byte searches: 1.7 times faster than one regular expression.
    return b'"damaged"' in data or b'"changed"' in data


# -- whole event lines: the job inside, and queued events made of jobs -------

#: The event fields most lines hold, in the order they come: an alternation
#: of the names tries them in order (a tenth faster over a chunk of events).
_COMMON_EVENT_FIELDS = ("ts", "host", "pid", "files", "files_skipped", "bytes", "seconds",
                        "attempts", "error", "retryable", "http_status")
_EVENT_FIELD_NAMES = b"|".join(f.encode() for f in _COMMON_EVENT_FIELDS + tuple(
    sorted(EVENT_FIELDS.difference(_COMMON_EVENT_FIELDS))))


#: The job fields the pipeline gives, in the order it gives them (ia-resolve,
#: then ia-route): ``_event_line`` tries each by name before any field (as
#: ``_EVENT_FIELDS`` the fields ia-fetch puts first in its outcomes).  The
#: same lines match, with the same extents: each value as the pattern of
#: any field of its kind takes it, possessive all; a completion is cut out
#: in 0.63 us rather than 0.9.
_USUAL_JOB_FIELDS = b"".join(rb'(?:,"' + name + rb'":' + PLAIN_VALUE + rb")?+"
                             for name in (b"size", b"updated", b"destdir"))


def _event_line(kinds, details, key, among=False):
    """The regular expression of an event line of one of ``kinds`` as the
    iatools commands write it: "event", the job, "ts", "host", "pid", then
    fields matching ``details`` -- with no event field among the job's, so
    that the job is group 1, and the only one (``key`` has none): findall
    then gives each job's bytes, a third faster than a tuple of groups.
    ``among``: found among lines of other kinds, in a ``marked`` text with
    a newline after its last line (a literal newline to search for, where
    ``^`` would be tried at every byte)."""
    start, end = (rb"\n\{", rb"\}(?=\n)") if among else (rb"^\{", rb"\}$")
    return re.compile(
        start + rb'"event":"(?:' + kinds + rb')",(' + key + _USUAL_JOB_FIELDS + rb'(?:,"(?!(?:id|'
        + rb'file|' + _EVENT_FIELD_NAMES + rb')")[ !#-\[\]-~]*+":' + PLAIN_VALUE + rb")*+)"
        + rb',"ts":"[^"\\]*+","host":"[^"\\]*+","pid":[0-9]++' + details + end,
        0 if among else re.MULTILINE)


def event_shape(kinds, details=b"", among=False):
    """The event lines of some kinds as the iatools commands write them
    (``_event_line``): matched whole (``fullmatch``), or found in a text of
    such lines (``findall``); ``among`` lines of other kinds."""
    return _DotAware(partial(_event_line, kinds, details, among=among),
                     (_key(_ID, group=False), _key(_ID_CHARS, group=False)))


#: The value of an event field, judged only as far as ``completed`` and
#: ``pending`` need when they cut the jobs out of the lines a reader chose:
#: no job field may hide among the event fields after "ts" (a number's
#: characters, a plain string, a literal, a list with no "]" inside).  A
#: completion line then takes 1.2 us, where judging each value exactly
#: (``_DETAIL``) took 2.1; a line that does not match is parsed.
_EVENT_NUMBER = rb"[0-9.eE+\-]++"
_EVENT_FIELD_VALUE = rb'(?:' + _EVENT_NUMBER + rb'|"[ !#-\[\]-~]*+"|true|false|null|\[[^\]\n]*+\])'
#: The fields ia-fetch puts first in its outcomes, in its order, tried by
#: name before any field (see _USUAL_JOB_FIELDS).
_USUAL_OUTCOME_FIELDS = (rb'(?:' + b"".join(rb',"' + name + rb'":' + _EVENT_NUMBER for name in (
    b"files", b"files_skipped", b"bytes", b"seconds", b"attempts")) + rb")?+")


def _event_fields(names):
    """Event fields after "pid", any of ``names`` (an alternation)."""
    return (_USUAL_OUTCOME_FIELDS + rb'(?:,"(?:' + names + rb')":' + _EVENT_FIELD_VALUE
            + rb")*+")


_EVENT_FIELDS = _event_fields(_EVENT_FIELD_NAMES)
#: A queued event as skip writes it (with a "reason", or not).
QUEUED_EVENT = event_shape(b"queued", _EVENT_FIELDS)
#: A completed or verified event as ia-fetch and ia-verify write them.
COMPLETION_EVENT = event_shape(b"completed|verified", _EVENT_FIELDS)
#: ... found among events of other kinds (``jobs_among``), with no second
#: "event" field: a line that a parser would read as another kind never
#: passes for a completion.
COMPLETION_AMONG_EVENTS = event_shape(b"completed|verified", _event_fields(
    b"|".join(name for name in _EVENT_FIELD_NAMES.split(b"|") if name != b"event")), among=True)

#: The details of an event as ``parse_event`` accepts them: event fields
#: whose values are plain, a number with a fraction ("seconds") or a list of
#: plain values ("files_removed": file names).
_DETAIL = (rb"(?:-?[0-9]++\.[0-9]++|" + PLAIN_VALUE + rb"|\[(?:" + PLAIN_VALUE + rb"(?:,"
           + PLAIN_VALUE + rb")*+)?\])")
#: A job field of an event that ``parse_event`` would accept as it stands:
#: "size" a whole number, "destdir" a string, any other field plain and
#: neither a key nor an event field.
_VALID_JOB_FIELD = (rb',"size":(?:' + SIZE + rb')|,"destdir":"[ !#-\[\]-~]++"|,"(?!(?:id|file|size|destdir|'
                    + _EVENT_FIELD_NAMES + rb')")[ !#-\[\]-~]*+":' + PLAIN_VALUE)
#: Event lines as the iatools commands write them, with plain values only
#: (the details: plain, a fraction, a list of plain values): lines that
#: ``parse_event`` accepts, judged without parsing them -- in a chunk that
#: ``plain_chunk`` accepts (no ".." anywhere: the key's look for it would
#: find none), matched whole at once (no string made of each line).  Each
#: repeat is followed by what it cannot match, so all are possessive.
_RECORDABLE_EVENTS = re.compile(
    rb'(?:\{"event":"[a-z_]++",' + _CHUNK_KEY + rb'(?:' + _VALID_JOB_FIELD + rb')*+'
    + rb',"ts":"[^"\\\n]*+","host":"[^"\\\n]*+","pid":[0-9]++(?:,"(?:' + _EVENT_FIELD_NAMES
    + rb')":' + _DETAIL + rb')*+\}\n)*+')


def recordable_chunk(data):
    """Is each line of a chunk (whole lines) an event that ``parse_event``
    accepts?  Judged a chunk at a time, several times faster than parsing
    each (``ia-joblog append``); False sends the chunk to the parser, which
    says what is wrong."""
    return plain_chunk(data) and _RECORDABLE_EVENTS.fullmatch(data) is not None


def jobs_in(text, count, shape):
    """The job lines of the ``count`` event lines of a text, joined by
    newlines: cut out of those of the ``shape`` (``QUEUED_EVENT``,
    ``COMPLETION_EVENT``; all at once when each is one), others parsed."""
    jobs = shape.findall(text)
    if len(jobs) == count:
        return [b"".join((b"{", b"}\n{".join(jobs), b"}\n"))] if jobs else []
    return [_job_of(e, shape) for e in text.split(b"\n")]


def jobs_among(region, count, shape):
    """``jobs_in`` for a stretch of whole event lines holding ``count``
    lines of the ``shape`` (``COMPLETION_AMONG_EVENTS``) between lines of
    other kinds, without cutting them out first: None where it holds
    another number of them (one of another shape, or one not asked for).
    The lines are judged without the look for ".." in identifiers, then
    strictly if the jobs found hold ".." (not if the stretch does: the
    lines of other kinds would cost a pass of their own, 1 s for J1)."""
    text = b"\n" + region
    for strict in (False, True):
        jobs = shape.findall(text, dots=strict)
        if len(jobs) != count:
            return None
        found = b"".join((b"{", b"}\n{".join(jobs), b"}\n"))
        if strict or not has_dots(found):
            return [found]


def _job_of(event, shape):
    match = shape.fullmatch(event)
    if match:
        return b"{" + match[1] + b"}\n"
    return jsonl.dumps(job_from_record(orjson.loads(event)))


def queued_events(jobs):
    """The queued events of plain job lines: each line with "event" put
    first and the time, host and pid (one for the chunk) last -- the bytes
    make_event would give, built without parsing: the splice replaces the
    boundary between two lines, which is "}\\n{" and nothing else."""
    suffix = b"," + jsonl.dumps(event_stamp())[1:-1]
    return (QUEUED_START + jobs[1:-2].replace(b"}\n{", suffix + b"\n" + QUEUED_START)
            + suffix + b"\n")
