"""Error types and the one place that prints messages for humans (stderr).

Every message starts with the program's name, as in ``ia-fetch: error: ...``.
"""

import sys

from iatools.base.status import ExitStatus

QUIET, NORMAL, VERBOSE = 0, 1, 2

_prog = "iatools"
_verbosity = NORMAL
#: A live display (ia-fetch's progress) that writes messages above its
#: frame, so that a warning from a worker never lands inside it.
_display = None


def configure(prog, verbosity=NORMAL):
    global _prog, _verbosity
    _prog = prog
    _verbosity = verbosity


def prog():
    return _prog


def verbosity():
    return _verbosity


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
    try:
        sys.stderr.write(prefix + message + "\n")
        sys.stderr.flush()
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


class UsageError(IatoolsError):
    status = ExitStatus.USAGE
