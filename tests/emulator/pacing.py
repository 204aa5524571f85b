"""Per-connection bandwidth: each connection sends its bodies at no more than
``bandwidth`` bytes per second, whatever the other connections do."""

import time

UNCAPPED_CHUNK = 1 << 20


def chunk_size(rate):
    """Small enough that pacing is smooth (~64 sends a second), big enough to
    keep the syscall count sane."""
    if not rate:
        return UNCAPPED_CHUNK
    return max(4096, min(256 * 1024, rate // 64))


#: How far the clock may lag behind real time before it is reset: a send
#: and a late wake-up take time that is no idleness.  (Reset at once, each
#: chunk's send time was lost: a 16 MiB/s cap gave 15.4 MiB/s to curl.)
SLACK = 0.02


class Pacer:
    """A virtual clock: the moment the bytes sent so far are paid for.

    Bytes are paid for before they go out, so a body of N bytes takes N/rate
    seconds, less at most SLACK; idle time earns no more credit than that,
    so a connection never sends faster than the rate over SLACK or longer."""

    def __init__(self, stop_event):
        self._stop = stop_event
        self._paid_until = 0.0

    def pay(self, nbytes, rate):
        """Sleep until ``nbytes`` more may go out at ``rate`` bytes/s."""
        if not rate:
            return
        now = time.monotonic()
        self._paid_until = max(self._paid_until, now - SLACK) + nbytes / rate
        self._stop.wait(self._paid_until - now)
