"""What every command shares: its parser's common options, the streams it
reads and writes (``Streams``), and the one place where exceptions become
exit statuses (``run``)."""

import argparse
import contextvars
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from iatools import __version__
from iatools.base import errors, signals
from iatools.base.status import ExitStatus
from iatools.contract import jsonl


@dataclass(frozen=True)
class Streams:
    """The standard streams and environment of one run of a command, as
    httpie's ``Environment``: ``Streams.process()`` in a real process,
    ``io.BytesIO``/``io.StringIO`` ones when a test or a program calls
    ``main(argv, streams=...)`` in-process.

    ``stdin`` is a binary file (read with ``os.read`` when it has a real
    file descriptor, else with its ``read1``/``read``); ``stdout`` a binary
    file; ``stderr`` a text file.  The ``*_is_terminal`` flags choose the
    hints and live displays meant for a person at a terminal.  ``environ``
    is the run's environment, for the caller's reference: the
    configuration a command uses (``IA_CONFIG_FILE``, proxies, NO_COLOR) is
    read from the process environment, by internetarchive and requests as
    by iatools, so an in-process caller sets that.
    """

    stdin: object
    stdout: object
    stderr: object
    environ: Mapping = field(default_factory=dict)
    stdin_is_terminal: bool = False
    stdout_is_terminal: bool = False
    stderr_is_terminal: bool = False

    @classmethod
    def process(cls):
        """This process's fds 0, 1 and 2 and its environment."""
        return cls(stdin=_binary(sys.stdin, 0), stdout=_binary(sys.stdout, 1),
                   stderr=sys.stderr, environ=os.environ,
                   stdin_is_terminal=_is_terminal(0), stdout_is_terminal=_is_terminal(1),
                   stderr_is_terminal=_is_terminal(2))


def _binary(text_stream, fd):
    """The binary file under a standard stream; /dev/null when Python found
    it closed at start (an empty input, an output that goes nowhere)."""
    if text_stream is not None:
        return text_stream.buffer
    return open(os.devnull, "rb" if fd == 0 else "wb", buffering=0)


def _is_terminal(fd):
    try:
        return os.isatty(fd)
    except OSError:
        return False


#: The streams of the run in progress, for argparse's --help and --version.
_current_streams = contextvars.ContextVar("streams")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors by raising instead of exiting, and
    prints --help and --version on the run's streams."""

    def error(self, message):
        raise errors.UsageError(f"{message} (see {self.prog} --help)")

    def exit(self, status=0, message=None):
        if message:
            self._print_message(message, sys.stderr)
        raise _Exit(status)

    def _print_message(self, message, file=None):
        streams = _current_streams.get(None)
        if not message or streams is None:
            return super()._print_message(message, file)
        if file is sys.stderr:
            streams.stderr.write(message)
            streams.stderr.flush()
        else:  # through the JSONL writer, for its message when stdout fails
            output = jsonl.Output(streams.stdout)
            output.lines([message.encode()])
            output.flush()


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


def run(parser, body, argv=None, streams=None):
    """Parse ``argv``, run ``body(args)`` and turn its outcome into a status.

    The body finds its streams in ``args.streams``: ``streams``, or
    ``Streams.process()`` when None.  Messages go to their stderr.
    """
    streams = streams or Streams.process()
    token = _current_streams.set(streams)
    errors.configure(parser.prog, stderr=streams.stderr)
    jsonl.start_bad_line_count()
    try:
        with signals.restored():
            return _run_body(parser, body, argv, streams)
    finally:
        # Messages after the run (its abandoned threads', a caller's) go to
        # sys.stderr again, still under the command's name.
        errors.configure(errors.prog(), errors.verbosity(), stderr=None)
        _current_streams.reset(token)


def _run_body(parser, body, argv, streams):
    try:
        args = parser.parse_args(argv)
        errors.configure(parser.prog, _verbosity(args), streams.stderr)
        args.streams = streams
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
        _silence(streams.stdout)
        return ExitStatus.BROKEN_PIPE
    except OSError as exc:  # the system failed where no caller said what it was doing
        errors.error(_system_error(exc))
        return ExitStatus.FAILED


def _verbosity(args):
    if getattr(args, "quiet", False):
        return errors.QUIET
    if getattr(args, "verbose", False):
        return errors.VERBOSE
    return errors.NORMAL


def _system_error(exc):
    """An OSError for people: its file, if it names one, and its reason."""
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason


def _silence(stdout):
    """Point stdout at /dev/null so the final flush at exit cannot fail again
    (the Python docs' recipe for SIGPIPE); a stdout without a file
    descriptor has no such flush."""
    try:
        fd = stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
