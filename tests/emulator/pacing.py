"""How fast the emulator serves: per-connection bandwidth (each connection
sends its bodies at no more than ``bandwidth`` bytes per second, whatever
the other connections do), overload bursts per host, and a per-client rate
limiter."""

import collections
import math
import threading
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


class Bursts:
    """Hosts in overload: each refuses every request with 503 and a
    Retry-After until its burst ends, then serves normally again."""

    def __init__(self):
        self._lock = threading.Lock()
        self._until = {}  # host -> (time.time() the burst ends, Retry-After or None)

    def start(self, host, seconds, retry_after=None):
        """``host`` refuses everything for ``seconds`` from now, announcing
        ``retry_after`` (default: the rest of the burst, rounded up)."""
        with self._lock:
            self._until[host.lower()] = (time.time() + seconds, retry_after)

    def clear(self):
        with self._lock:
            self._until.clear()

    def refusal(self, host):
        """(503, Retry-After) for a request to ``host`` now, or None."""
        with self._lock:
            until, retry_after = self._until.get(host, (0.0, None))
        remaining = until - time.time()
        if remaining <= 0:
            return None
        return 503, retry_after if retry_after is not None else math.ceil(remaining)


class RateLimiter:
    """archive.org's rate limiter: a client (an address) that sent more than
    ``rate`` requests in the last second gets 429 with ``retry_after``."""

    WINDOW = 1.0

    def __init__(self):
        self._lock = threading.Lock()
        self._recent = collections.defaultdict(collections.deque)  # client -> times

    def refusal(self, client, rate, retry_after):
        """(429, ``retry_after``) for a request from ``client`` now, or None."""
        if not rate:
            return None
        now = time.monotonic()
        with self._lock:
            recent = self._recent[client]
            while recent and now - recent[0] > self.WINDOW:
                recent.popleft()
            recent.append(now)
            over = len(recent) > rate
        return (429, retry_after) if over else None
