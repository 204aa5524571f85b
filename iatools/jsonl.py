"""Reading and writing JSONL: one JSON object per line, bytes in and out.

Input is read with ``os.read`` in chunks and split into lines, so a fast
producer gives large batches (cheap) and a slow one gives single lines that
are handed on at once: callers flush their output after each batch.  Parsing
is left to the caller's loop, which knows the line number to report.
"""

import os

import orjson

from iatools import errors

CHUNK_SIZE = 1 << 16
#: A job or event line longer than this is rejected rather than parsed.
MAX_LINE_BYTES = 1 << 20


class BadLine(ValueError):
    """A line that is not a usable record; the message says why."""


class LineReader:
    """Batches of ``(line_number, line)`` from a file descriptor.

    Lines come without their line ending (``\\n`` or ``\\r\\n``).  A last
    line without a newline is kept in ``unterminated`` for the caller to
    judge: valid input on stdin, a torn write at the end of a log.
    """

    def __init__(self, fd):
        self.fd = fd
        self.line_number = 0
        self.unterminated = None

    def batches(self):
        partial = []
        while True:
            data = os.read(self.fd, CHUNK_SIZE)
            if not data:
                break
            if b"\n" not in data:
                partial.append(data)  # a long line: join once, when it ends
                continue
            lines = (b"".join(partial) + data if partial else data).split(b"\n")
            tail = lines.pop()
            partial = [tail] if tail else []
            yield self._number(lines)
        if partial:
            self.unterminated = b"".join(partial).rstrip(b"\r")
            self.line_number += 1

    def _number(self, lines):
        first = self.line_number + 1
        self.line_number += len(lines)
        return [(n, line[:-1] if line[-1:] == b"\r" else line)
                for n, line in enumerate(lines, first)]

    def all_lines(self):
        """Every line, the unterminated last one included (job input)."""
        yield from self.batches()
        if self.unterminated is not None:
            yield [(self.line_number, self.unterminated)]


def whole_lines(fd, size=CHUNK_SIZE, line_number=1):
    """Yield ``(first_line_number, newlines, data)``, ``data`` being whole
    lines as read, each ending in a newline (line endings kept as they are),
    except the last chunk when the input does not end with a newline (it
    has ``newlines`` 0).  For callers that judge a whole chunk at once;
    ``LineReader`` splits the lines.  ``line_number``: that of the first
    line read.
    """
    partial = []
    while data := os.read(fd, size):
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


def within_line_limit(data):
    """Is no line of ``data`` longer than ``MAX_LINE_BYTES``?  For callers
    that judge a whole chunk without ``parse_object``."""
    return len(data) <= MAX_LINE_BYTES or max(map(len, data.split(b"\n"))) <= MAX_LINE_BYTES


def report_bad_line(line_number, problem, source="input"):
    errors.error(f"{source} line {line_number}: {problem}; skipped")


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
        raise BadLine(f"invalid JSON ({_short_reason(exc)})") from None
    if not isinstance(record, dict):
        raise BadLine(f"not a JSON object (a {type(record).__name__})")
    return record


def _short_reason(exc):
    reason = str(exc)
    return "invalid UTF-8" if "utf-8" in reason.lower() else reason.split(":")[0]


def dumps(record):
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


class Output:
    """Buffered JSONL writer on stdout (or any fd); flush deliberately.

    ``sys.stdout`` is line-buffered or unbuffered under PYTHONUNBUFFERED,
    which costs a system call per line in pipes.
    """

    def __init__(self, fd=1):
        self._file = open(fd, "wb", buffering=CHUNK_SIZE, closefd=False)

    def record(self, record):
        self._file.write(dumps(record))

    def raw(self, line):
        self._file.write(line + b"\n")

    def lines(self, lines):
        """Write already-terminated lines."""
        self._file.write(b"".join(lines))

    def flush(self):
        self._file.flush()

    def event(self, record):
        """Write and flush one event, so that a recorder downstream has it at
        once; False when the reader has closed the pipe (nothing more can
        be written then)."""
        try:
            self.record(record)
            self.flush()
            return True
        except BrokenPipeError:
            return False


def warn_if_terminal(fd, what):
    """Say how to feed a command that is reading a terminal, not a pipe."""
    if os.isatty(fd):
        errors.warning(
            f"reading {what} from the terminal; type JSON lines and press Ctrl-D, "
            f"or pipe them in (e.g. ia-resolve ID | {errors.prog()}); see --help"
        )
