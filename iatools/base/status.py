"""Exit statuses shared by every iatools command (listed in each man page)."""

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    #: Some jobs failed or some input lines were bad; the rest was processed.
    FAILED = 1
    USAGE = 2
    #: ia-route --no-wait: no disk could take the next job.
    NO_SPACE = 3
    INTERRUPTED = 130
    #: Downstream closed the pipe (as a command killed by SIGPIPE reports).
    BROKEN_PIPE = 141
