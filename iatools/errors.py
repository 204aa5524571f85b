"""Error types and the one place that prints messages for humans (stderr).

Every message starts with the program's name, as in ``ia-fetch: error: ...``.
"""

import sys

from iatools.status import ExitStatus

QUIET, NORMAL, VERBOSE = 0, 1, 2

_prog = "iatools"
_verbosity = NORMAL


def configure(prog, verbosity=NORMAL):
    global _prog, _verbosity
    _prog = prog
    _verbosity = verbosity


def prog():
    return _prog


def verbosity():
    return _verbosity


def _say(kind, message):
    prefix = f"{_prog}: {kind}: " if kind else f"{_prog}: "
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
