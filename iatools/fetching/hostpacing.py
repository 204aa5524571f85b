"""How hard ia-fetch may press each host: pauses, bursts, adaptive concurrency.

An isolated refusal (a 503 with Retry-After, a 5xx) says "not this request,
not now": only that request waits, the pool holds it back.  A host that
refuses again before that wait is over, with no answer in between, is in a
burst ("once it starts getting 503s, it gets a lot"): nothing more goes to
it until the announced time, and the requests it may have at once halve
(never below one); each clean interval gives one back, up to -j, as TCP's
AIMD does.  A 429 comes from archive.org's rate limiter, which counts the
client, not the host: every host pauses.  Pauses that overlap extend one
another; they never add up.
"""

import threading
import time
from dataclasses import dataclass

#: Seconds without a refusal from a host that give it back one connection.
CLEAN_INTERVAL = 1.0


class HostPaused(Exception):
    """A request may not go to ``host`` before ``until`` (time.monotonic())."""

    def __init__(self, host, until):
        super().__init__(f"{host} is paused")
        self.host, self.until = host, until


@dataclass
class _Host:
    limit: int          # requests it may have at once
    active: int = 0
    paused_until: float = 0.0
    refused_until: float = 0.0  # the latest refusal's wait: a refusal before it is a burst
    refusals: int = 0   # refusals since the last answer
    calm_since: float = 0.0  # the last refusal, or the last connection given back


class HostPacing:
    """Shared by every worker.  ``notify(message)`` hears each slowdown."""

    def __init__(self, ceiling, notify=lambda message: None):
        self.ceiling = ceiling
        self._notify = notify
        self._lock = threading.Lock()
        self._hosts = {}
        self._all_until = 0.0

    def _host(self, host):
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(self.ceiling)
        return state

    def try_acquire(self, host):
        """Count a request to ``host`` if one may go now; else False."""
        now = time.monotonic()
        with self._lock:
            state = self._host(host)
            if now < max(state.paused_until, self._all_until) or state.active >= state.limit:
                return False
            state.active += 1
            return True

    def busy(self, host):
        """Has ``host`` a request in flight?"""
        with self._lock:
            state = self._hosts.get(host)
            return state is not None and state.active > 0

    def release(self, host):
        with self._lock:
            state = self._hosts[host]
            state.active -= 1
            self._forget_if_calm(host, state)

    def _forget_if_calm(self, host, state):
        """Drop what is known of a host that is as if never met: each item
        has storage nodes of its own, and a long run meets millions."""
        if state.active == 0 and state.limit == self.ceiling \
                and time.monotonic() >= max(state.paused_until, state.refused_until):
            del self._hosts[host]

    def ready_at(self, host):
        """When ``host``'s pause (or every host's) ends: time.monotonic()."""
        with self._lock:
            state = self._hosts.get(host)
            return max(state.paused_until if state else 0.0, self._all_until)

    def check(self, host):
        """Raise HostPaused when no request may go to ``host`` now (a
        redirect may lead to a host paused since its task was taken)."""
        until = self.ready_at(host)
        if time.monotonic() < until:
            raise HostPaused(host, until)

    def answered(self, host):
        """``host`` answered without refusing: the burst, if any, is over,
        and a clean interval gives a connection back."""
        now = time.monotonic()
        with self._lock:
            state = self._hosts.get(host)
            if state is None:
                return
            state.refusals = 0
            if state.limit < self.ceiling and now - state.calm_since >= CLEAN_INTERVAL \
                    and now >= state.paused_until:
                state.limit += 1
                state.calm_since = now
            self._forget_if_calm(host, state)

    def refused(self, host, status, seconds):
        """``host`` refused a request with HTTP ``status``, which may not be
        sent again for ``seconds``."""
        now = time.monotonic()
        until = now + seconds
        with self._lock:
            state = self._host(host)
            burst = state.refusals > 0 and now < state.refused_until
            state.refusals += 1
            state.refused_until = max(state.refused_until, until)
            message = None
            if status == 429:
                self._all_until = max(self._all_until, until)
                message = (f"HTTP 429 from {host} (archive.org's rate limit counts the client): "
                           f"every host paused for {seconds:.1f} s")
            elif burst and now >= state.paused_until:
                state.paused_until = until
                state.limit = max(1, state.limit // 2)
                message = (f"{host} refused {state.refusals} requests in a row (HTTP {status}): "
                           f"paused for {seconds:.1f} s, then {state.limit} connection"
                           f"{'s' if state.limit > 1 else ''} to it")
            elif burst:  # still in the burst's pause: it extends, it halves once
                state.paused_until = max(state.paused_until, until)
            # A clean interval starts once the pause is over.
            state.calm_since = max(now, state.paused_until)
        if message:
            self._notify(message)

    def describe(self):
        """A few words on what slows the run now, or "" (progress display)."""
        now = time.monotonic()
        with self._lock:
            if now < self._all_until:
                return f"all hosts paused {self._all_until - now:.0f} s (HTTP 429)"
            parts = [f"{host} paused {state.paused_until - now:.0f} s (a burst of refusals)"
                     if now < state.paused_until else
                     f"{host} at {state.limit}/{self.ceiling} connections"
                     for host, state in self._hosts.items()
                     if now < state.paused_until or state.limit < self.ceiling]
        return "slowed: " + ", ".join(parts) if parts else ""
