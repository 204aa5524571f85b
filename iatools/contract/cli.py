"""What every command shares: its parser's common options and the one place
where exceptions become exit statuses."""

import argparse
import os
import sys

from iatools import __version__

from iatools.base import errors

from iatools.contract import jsonl
from iatools.base.status import ExitStatus


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors by raising instead of exiting."""

    def error(self, message):
        raise errors.UsageError(f"{message} (see {self.prog} --help)")

    def exit(self, status=0, message=None):
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


class _Exit(Exception):
    def __init__(self, status):
        self.status = status


def make_parser(prog, description, epilog=None):
    parser = _Parser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{prog} (iatools) {__version__}")
    add_verbosity(parser)
    return parser


def add_verbosity(parser, subcommand=False):
    """-q and -v; a subcommand's copy must not reset what the main parser set."""
    default = argparse.SUPPRESS if subcommand else False
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="print nothing but errors on stderr")
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="say more on stderr")


def run(parser, body, argv=None):
    """Parse ``argv``, run ``body(args)`` and turn its outcome into a status."""
    errors.configure(parser.prog)
    jsonl.start_bad_line_count()
    try:
        args = parser.parse_args(argv)
        errors.configure(parser.prog, _verbosity(args))
        status = int(body(args))
        jsonl.report_bad_line_count()
        return status
    except _Exit as exc:
        return exc.status
    except errors.IatoolsError as exc:
        jsonl.report_bad_line_count()
        errors.error(str(exc))
        return exc.status
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return ExitStatus.BROKEN_PIPE


def _verbosity(args):
    if getattr(args, "quiet", False):
        return errors.QUIET
    if getattr(args, "verbose", False):
        return errors.VERBOSE
    return errors.NORMAL


def _silence_stdout():
    """Point stdout at /dev/null so the final flush at exit cannot fail again
    (the Python docs' recipe for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
