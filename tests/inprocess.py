"""Run a command's ``main`` in this process, on streams of bytes: the unit
layer under the subprocess suite (cli.Streams)."""

import io
from dataclasses import dataclass

from iatools.contract.cli import Streams


@dataclass
class Outcome:
    status: int
    stdout: bytes
    stderr: str

    def lines(self):
        """stdout's lines, without their newlines."""
        return self.stdout.decode().splitlines()

    def messages(self):
        return self.stderr.splitlines()


def call(main, argv, stdin=b"", environ=None, **terminal_flags):
    """``main(argv)`` with ``stdin`` as its input; its status and outputs.
    ``terminal_flags``: ``stdin_is_terminal=True`` and the like."""
    stdout, stderr = io.BytesIO(), io.StringIO()
    streams = Streams(stdin=io.BytesIO(stdin), stdout=stdout, stderr=stderr,
                      environ=environ or {}, **terminal_flags)
    status = main([str(arg) for arg in argv], streams=streams)
    return Outcome(status, stdout.getvalue(), stderr.getvalue())
