"""Error types and the one place that prints messages for humans: the run's
stderr (``configure``), else ``sys.stderr``.

Every message starts with the program's name, as in ``ia-fetch: error: ...``.
"""

import sys

from iatools.base.status import ExitStatus

QUIET, NORMAL, VERBOSE = 0, 1, 2

_prog = "iatools"
_verbosity = NORMAL
_stderr = None  # a text file; None: sys.stderr as it is when a message is written
#: A live display (ia-fetch's progress) that writes messages above its
#: frame, so that a warning from a worker never lands inside it.
_display = None


_UNCHANGED = object()


def configure(prog, verbosity=NORMAL, stderr=_UNCHANGED):
    """Name messages after ``prog``, print those of ``verbosity`` and up,
    on ``stderr`` (None: ``sys.stderr``; by default, where they went)."""
    global _prog, _verbosity, _stderr
    _prog = prog
    _verbosity = verbosity
    if stderr is not _UNCHANGED:
        _stderr = stderr


def prog():
    return _prog


def verbosity():
    return _verbosity


def stderr():
    """Where messages go: for a display drawn among them."""
    return _stderr or sys.stderr


def set_display(display):
    """Send every message through ``display.message(text)`` from now on;
    None writes them straight to stderr again."""
    global _display
    _display = display


def _say(kind, message):
    prefix = f"{_prog}: {kind}: " if kind else f"{_prog}: "
    if _display is not None:
        _display.message(prefix + message + "\n")
        return
    stderr = _stderr or sys.stderr
    try:
        stderr.write(prefix + message + "\n")
        stderr.flush()
    except (OSError, ValueError):
        pass  # stderr gone: nowhere left to complain to


def error(message):
    """Errors are printed even with --quiet."""
    _say("error", message)


def warning(message):
    if _verbosity >= NORMAL:
        _say("warning", message)


def info(message):
    if _verbosity >= NORMAL:
        _say("", message)


def debug(message):
    if _verbosity >= VERBOSE:
        _say("", message)


class IatoolsError(Exception):
    """An error that ends the command with a message and an exit status."""

    status = ExitStatus.FAILED


class UsageError(IatoolsError, ValueError):
    """A bad argument, option or configuration: for the Python API, a
    ValueError as well."""

    status = ExitStatus.USAGE
