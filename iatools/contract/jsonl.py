"""Reading and writing JSONL: one JSON object per line, bytes in and out.

Input is read with ``os.read`` in chunks and split into lines, so a fast
producer gives large batches (cheap) and a slow one gives single lines that
are handed on at once: callers flush their output after each batch.  Parsing
is left to the caller's loop, which knows the line number to report.
"""

import functools
import os
import re
import select

import orjson

from iatools.base import errors

CHUNK_SIZE = 1 << 16
#: A job or event line longer than this is rejected rather than parsed.
MAX_LINE_BYTES = 1 << 20


class StreamError(errors.IatoolsError):
    """A standard stream that cannot be read or written (stdin opened
    write-only, stdout on a full disk): the command ends with status 1.  A
    reader that closed its pipe is no error: BrokenPipeError."""


def _stream_error(exc, doing):
    """``exc`` as the StreamError of ``doing`` (``cannot write events``);
    a broken pipe stays one."""
    if isinstance(exc, BrokenPipeError):
        return exc
    return StreamError(f"{doing}: {exc.strerror}")


class BadLine(ValueError):
    """A line that is not a usable record; the message says why, and
    ``likely`` what the user probably meant (``hint_for``), if anything.
    ``kept``: what of the line is passed on all the same, if anything (a
    whole record glued after a torn one)."""

    def __init__(self, message, likely="", kept=None):
        super().__init__(message + likely)
        self.likely = likely
        self.kept = kept


def reading(source):
    """The ``read(size)`` of ``source``: an fd, or a binary file.  A real
    file descriptor is read with ``os.read`` (what a pipe has ready, at
    once, with no copy through a buffer); a file without one (``io.BytesIO``)
    with its ``read1``, else its ``read``."""
    if isinstance(source, int):
        return functools.partial(_read_waiting, source)
    try:
        return functools.partial(_read_waiting, source.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return getattr(source, "read1", source.read)


def _read_waiting(fd, size):
    """``os.read``, waiting for data when the descriptor is non-blocking
    (O_NONBLOCK is shared by every process on a pipe: a program earlier in
    a pipeline, or the one that started this, may have set it)."""
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            select.select([fd], [], [])


def whole_lines(source, size=CHUNK_SIZE, line_number=1, what="input"):
    """Yield ``(first_line_number, newlines, data)``, ``data`` being whole
    lines as read from ``source`` (an fd or a binary file: ``reading``),
    each ending in a newline (line endings kept as they are), except the
    last chunk when the input does not end with a newline (it has
    ``newlines`` 0).  For callers that judge a whole chunk at once;
    ``LineReader`` splits the lines.  ``line_number``: that of the first
    line read.  A read that fails is a StreamError, "cannot read ``what``".
    """
    read = reading(source)
    partial = []
    while True:
        try:
            data = read(size)
        except OSError as exc:
            raise _stream_error(exc, f"cannot read {what}") from None
        if not data:
            break
        end = data.rfind(b"\n") + 1
        if not end:
            partial.append(data)  # a long line: join once, when it ends
            continue
        whole = b"".join(partial) + data[:end] if partial else data[:end]
        partial = [data[end:]] if end < len(data) else []
        newlines = whole.count(b"\n")
        yield line_number, newlines, whole
        line_number += newlines
    if partial:
        yield line_number, 0, b"".join(partial)


def split_lines(data):
    """The lines of a chunk of whole lines, without their endings (LF or CRLF)."""
    return without_cr(data.split(b"\n")[:-1])


def without_cr(lines):
    """The lines, each without the CR of a CRLF ending."""
    return [line[:-1] if line[-1:] == b"\r" else line for line in lines]


class LineReader:
    """Batches of ``(line_number, line)`` from an fd or a binary file.

    Lines come without their line ending (``\\n`` or ``\\r\\n``).  A last
    line without a newline is kept in ``unterminated`` for the caller to
    judge: valid input on stdin, a torn write at the end of a log.
    ``what`` the source is, for the message when it cannot be read.
    """

    def __init__(self, source, what="input"):
        self.source = source
        self.what = what
        self.line_number = 0
        self.unterminated = None

    def batches(self):
        for first, newlines, data in whole_lines(self.source, what=self.what):
            if not newlines:
                self.unterminated = without_cr([data])[0]
                self.line_number += 1
                break
            self.line_number += newlines
            yield list(enumerate(split_lines(data), first))

    def all_lines(self):
        """Every line, the unterminated last one included (job input)."""
        yield from self.batches()
        if self.unterminated is not None:
            yield [(self.line_number, self.unterminated)]


class RecordReader:
    """The numbered read-parse-report loop of a command reading records.

    ``parse(line_number, line)`` makes the record of a line (None: nothing
    to pass on) or raises BadLine, which is reported with the line's
    number (``where`` and the number: ``input line 12``) and counted in
    ``bad_lines``; blank lines and comments go to ``on_comment``, if given.
    ``what`` the source holds, for the message when it cannot be read.
    """

    def __init__(self, source, parse, where="input line", on_comment=None, what="input"):
        self.source = source
        self.what = what
        self.parse = parse
        self.where = where
        self.on_comment = on_comment
        self.bad_lines = 0

    def batches(self):
        """The records of each batch of lines read, an iterator per batch
        (parsed as it is consumed), so that the caller flushes what it
        writes once a batch."""
        for batch in LineReader(self.source, self.what).all_lines():
            yield self.records(batch)

    def records(self, numbered_lines):
        """The records of ``(line_number, line)`` pairs."""
        return parse_lines(numbered_lines, self.parse, self._count_bad_line, self.where,
                           self.on_comment)

    def _count_bad_line(self, line_number):
        self.bad_lines += 1


def parse_lines(numbered_lines, parse, on_bad_line, where="input line", on_comment=None):
    """Yield ``parse(line_number, line)`` for each of ``numbered_lines`` but
    blank lines and comments (given to ``on_comment``) and results that are
    None; a BadLine is reported with the line's number, which then goes to
    ``on_bad_line``, and what it ``kept`` is yielded.  (``RecordReader``'s
    loop, for a chunk at a time.)"""
    for line_number, line in numbered_lines:
        if is_blank_or_comment(line):
            if on_comment is not None:
                on_comment(line)
            continue
        try:
            record = parse(line_number, line)
        except BadLine as exc:
            report_bad(f"{where} {line_number}", exc)
            on_bad_line(line_number)
            if exc.kept is not None:
                yield exc.kept
            continue
        if record is not None:
            yield record


def within_line_limit(data):
    """Is no line of ``data`` longer than ``MAX_LINE_BYTES``?  For callers
    that judge a whole chunk without ``parse_object``."""
    return len(data) <= MAX_LINE_BYTES or max(map(len, data.split(b"\n"))) <= MAX_LINE_BYTES


#: Bad lines reported one by one: this many with one same problem (the lines
#: of a pretty-printed file, most alike), and this many in all.  The rest are
#: counted, and the count is told at the end (``report_bad_line_count``): a
#: pretty-printed file of 100,000 jobs would otherwise print a message per
#: physical line.
REPORTED_PER_PROBLEM = 10
REPORTED_IN_ALL = 100


class _BadLines:
    """The bad lines of this run of a command (one per process; ``cli.run``
    starts each count)."""

    count = shown = 0
    problems = {}  # problem (or likely cause) -> messages shown


def report_bad(where, problem):
    """Report a bad input (``where``: ``input line 12``, ``search result
    3``) and say it was skipped, within the caps above."""
    # Lines with one likely cause are alike, whatever the parser said of each.
    alike = getattr(problem, "likely", "") or str(problem)
    shown = _BadLines.problems.get(alike, 0)
    _BadLines.count += 1
    if shown >= REPORTED_PER_PROBLEM or _BadLines.shown >= REPORTED_IN_ALL:
        return
    _BadLines.problems[alike] = shown + 1
    _BadLines.shown += 1
    errors.error(f"{where}: {problem}; skipped")
    if shown + 1 == REPORTED_PER_PROBLEM:
        errors.error("more lines with this same problem are skipped without a message each; "
                     "their number is told at the end")
    elif _BadLines.shown == REPORTED_IN_ALL:
        errors.error("more bad lines are skipped without a message each; their number is "
                     "told at the end")


def start_bad_line_count():
    _BadLines.count = _BadLines.shown = 0
    _BadLines.problems = {}


def report_bad_line_count():
    """At the end of a run: how many bad lines went unreported, if any."""
    hidden = _BadLines.count - _BadLines.shown
    if hidden:
        errors.error(f"{_BadLines.count} bad lines skipped in all ({hidden} not shown)")


#: Comment lines that announce counts to the commands downstream, skipped
#: like any comment by every reader: ``# total N``, N jobs follow (a
#: search's count, from its first page), and ``# skipped N``, N of the jobs
#: announced were dropped on the way (another shard's, done already).
#: ia-fetch's progress takes its total from them; see iatools(7).
_COUNT_LINE = re.compile(rb"# (total|skipped) (\d+)[ \t\r]*")
_COUNT_LINES = re.compile(rb"^# (?:total|skipped) \d+[ \t\r]*$", re.MULTILINE)


def count_line(kind, count):
    """The comment line announcing ``count`` jobs of ``kind`` (total, skipped)."""
    return f"# {kind} {count}\n".encode()


def announced_count(line):
    """``(kind, count)`` for a count comment line, else None."""
    match = _COUNT_LINE.fullmatch(line)
    return (match.group(1).decode(), int(match.group(2))) if match else None


def count_lines(data):
    """The count comment lines in ``data`` (whole lines), to pass them on."""
    if b"#" not in data:  # (one byte: found by memchr, 20 times faster than "# ")
        return []
    return [match.group(0).rstrip() + b"\n" for match in _COUNT_LINES.finditer(data)]


def is_blank_or_comment(line):
    stripped = line.lstrip()
    return not stripped or stripped[:1] == b"#"


def parse_object(line):
    """Parse one line into a dict, or raise BadLine saying what is wrong."""
    if len(line) > MAX_LINE_BYTES:
        raise BadLine(f"line too long ({len(line)} bytes; the limit is {MAX_LINE_BYTES})")
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadLine(f"invalid JSON ({_short_reason(exc)})", hint_for(line)) from None
    if not isinstance(record, dict):
        raise BadLine(f"not a JSON object (a {type(record).__name__})", hint_for(line))
    return record


def _short_reason(exc):
    reason = str(exc)
    return "invalid UTF-8" if "utf-8" in reason.lower() else reason.split(":")[0]


#: A line of an object that ``jq`` (without -c) or ``json.dumps(indent=)``
#: spread over several lines: a brace alone, or a ``"name": value`` member.
_PRETTY_PRINTED = re.compile(rb'\s*(?:[{}\[\]],?|"[^"]*"\s*:.*)\s*')


def hint_for(line):
    """What the user most likely meant by a line that is not a job, as the
    end of a message ("; looks like ..."), or ""."""
    if _PRETTY_PRINTED.fullmatch(line):
        return "; looks like pretty-printed JSON: use jq -c (one object per line)"
    from iatools.contract.jobs import identifier_problem  # jobs builds on this module

    try:
        text = line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return ""
    if text and identifier_problem(text) is None:
        return ("; looks like a plain identifier: make jobs of a list of identifiers "
                "with ia-resolve -i FILE (or -i - for stdin)")
    return ""


def dumps(record):
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


class Output:
    """Buffered JSONL writer on stdout, or any fd or binary file; flush
    deliberately.  A write that fails is a StreamError, "cannot write
    ``what``" (a BrokenPipeError when the reader has gone).

    ``sys.stdout`` is line-buffered or unbuffered under PYTHONUNBUFFERED,
    which costs a system call per line in pipes: a file with a real file
    descriptor gets a buffer of its own on it.
    """

    def __init__(self, stdout=1, what="output"):
        self.what = what
        try:
            fd = stdout if isinstance(stdout, int) else stdout.fileno()
        except (AttributeError, OSError, ValueError):  # io.BytesIO: written as it is
            self._file = stdout
        else:
            self._file = open(fd, "wb", buffering=CHUNK_SIZE, closefd=False)

    def record(self, record):
        self._write(dumps(record))

    def raw(self, line):
        self._write(line + b"\n")

    def lines(self, lines):
        """Write already-terminated lines."""
        self._write(b"".join(lines))

    def _write(self, data):
        try:
            self._file.write(data)
        except OSError as exc:  # a full buffer is flushed on the way
            raise _stream_error(exc, f"cannot write {self.what}") from None

    def flush(self):
        try:
            self._file.flush()
        except OSError as exc:
            raise _stream_error(exc, f"cannot write {self.what}") from None


#: How each kind of input is typed on a terminal, and piped in.
_TERMINAL_HINTS = {
    "jobs": ("JSON jobs", {"ia-fetch": "ia-resolve ID | ia-fetch",
                           "ia-route": "ia-resolve ID | ia-route -d DIR",
                           "ia-verify": "ia-resolve ID | ia-verify -d DIR",
                           "ia-joblog": "ia-resolve ID | ia-joblog skip LOG"}),
    "events": ("JSON events", {"ia-joblog": "ia-fetch < jobs.jsonl | ia-joblog append LOG"}),
    "an item list": ("identifiers, one a line,",
                     {"ia-resolve": "ia-resolve -i - < ids.txt"}),
}


def warn_if_terminal(stdin_is_terminal, what):
    """Say how to feed a command that is reading a terminal, not a pipe."""
    if stdin_is_terminal:
        typed, pipes = _TERMINAL_HINTS[what]
        example = pipes.get(errors.prog())
        piped = f"pipe {what} in (e.g. {example})" if example else f"pipe {what} in"
        errors.warning(f"reading {what} from the terminal; type {typed} and press Ctrl-D, "
                       f"or {piped}; see --help")
