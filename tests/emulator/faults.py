"""Faults, random (rates in ``Settings``) and scripted (``Faults.inject``).

A fault is written as text:

=================  =========================================================
``"503"``          answer that status (any 4xx/5xx); ``"429:2"`` adds
                   ``Retry-After: 2``
``"reset"``        send the headers and half the body, then a TCP RST
``"corrupt"``      send the full length with one byte flipped mid-body
``"stall"``        send nothing for ``stall_seconds`` (``"stall:5"``: 5 s),
                   then serve normally
``"hang"``         send the headers (and up to half the body), then
                   nothing for ``stall_seconds`` (``"hang:5"``: 5 s), then
                   the rest: a stall mid-response
``"close"``        close the connection right after reading the request
``"error"``        scrape or metadata: HTTP 200 with ``{"error": ...}``
``"total_null"``   scrape: this page says ``"total": null``
``"ok"``           no fault (a placeholder in a sequence)
=================  =========================================================

``"error"`` and ``"total_null"`` do nothing on downloads.  Scripted faults
apply to any request but ``/_emu/``; random ones only to the kinds in
``Settings.fault_kinds``, each request drawing once against the rates.
Overload comes first: a host in a burst (``Faults.bursts.start``) answers
503 to everything, and a client above ``Settings.rate_limit`` gets 429.
"""

import collections
import fnmatch
import random
import re
import threading
from dataclasses import dataclass

from tests.emulator.pacing import Bursts, RateLimiter

_NAMES = ("reset", "corrupt", "stall", "hang", "close", "error", "total_null", "ok")


@dataclass(frozen=True)
class Fault:
    name: str              # "status" or one of _NAMES
    status: int = None     # for "status"
    seconds: float = None  # Retry-After for "status", duration for "stall"

    def __str__(self):
        label = str(self.status) if self.name == "status" else self.name
        return label if self.seconds is None else f"{label}:{self.seconds:g}"


def parse_fault(text):
    label, _, argument = str(text).partition(":")
    seconds = float(argument) if argument else None
    if label.isdigit() and 400 <= int(label) <= 599:
        return Fault("status", int(label), seconds)
    if label in _NAMES and (not argument or label in ("stall", "hang")):
        return Fault(label, None, seconds)
    raise ValueError(f"unknown fault {text!r} (see tests.emulator.faults)")


class Faults:
    """Decides the fault, if any, for each request."""

    def __init__(self, settings):
        self._settings = settings
        self._lock = threading.Lock()
        self._rules = []  # [(matches, deque of Fault)], in injection order
        self._random = random.Random(settings.fault_seed)
        self.bursts = Bursts()
        self.limiter = RateLimiter()

    def inject(self, pattern, faults):
        """The next requests whose path matches ``pattern`` get ``faults``, one
        each, in order; then normal service.

        The path is the decoded request path without the query string: for
        downloads ``/download/ITEM/NAME``, on a storage host ``DIR/NAME``
        (``/7/items/ITEM/NAME``), also ``/metadata/ITEM`` and
        ``/services/search/v1/scrape``.  A glob must match the whole path
        (``*`` also matches ``/``: ``*/items/ITEM/*`` is any storage file of
        ITEM); a pattern starting with ``re:`` is a regular expression
        searched anywhere in the path.  Earlier injections are used first."""
        parsed = collections.deque(parse_fault(text) for text in faults)
        with self._lock:
            self._rules.append((_matcher(pattern), parsed))

    def clear(self):
        with self._lock:
            self._rules.clear()

    def reseed(self, seed):
        with self._lock:
            self._random = random.Random(seed)

    def choose(self, kind, path, host=None, client=None):
        """The Fault for a request of ``kind`` to ``path`` on ``host`` from
        ``client`` (an address), or None."""
        settings = self._settings
        overload = self.bursts.refusal(host) or self.limiter.refusal(
            client, settings.rate_limit, settings.rate_limit_retry_after)
        if overload:
            return Fault("status", *overload)
        with self._lock:
            for matches, pending in self._rules:
                if pending and matches(path):
                    fault = pending.popleft()
                    return None if fault.name == "ok" else fault
            if kind in self._settings.fault_kinds:
                return self._random_fault(self._random.random())
        return None

    def _random_fault(self, draw):
        settings = self._settings
        candidates = (
            (settings.close_before_headers_rate, Fault("close")),
            (settings.stall_rate, Fault("stall")),
            (settings.status_rate, Fault("status", settings.status, settings.retry_after)),
            (settings.reset_rate, Fault("reset")),
            (settings.corrupt_rate, Fault("corrupt")),
        )
        for rate, fault in candidates:  # rates are shares of requests; they add up
            if draw < rate:
                return fault
            draw -= rate
        return None


def _matcher(pattern):
    if pattern.startswith("re:"):
        return re.compile(pattern[3:]).search
    return lambda path: fnmatch.fnmatchcase(path, pattern)
