"""The emulator's switches, set at construction and changeable while it runs
(``Emulator.configure(**changes)``, ``POST /_emu/config``, CLI flags)."""

import dataclasses

from iatools.base.sizes import parse_size

#: The kinds of request random faults may hit (``fault_kinds``).
FAULT_KINDS = ("metadata", "redirect", "storage", "scrape")
_RATES = ("status_rate", "reset_rate", "corrupt_rate", "stall_rate", "close_before_headers_rate")


def _setting(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class Settings:
    latency: float = _setting(0.0, "seconds from a request's arrival to its response")
    bandwidth: int = _setting(0, "body bytes per second per connection (e.g. 16M); 0: uncapped")
    status_rate: float = _setting(0.0, "share of requests answered with STATUS")
    status: int = _setting(503, "the status of those answers (503, 429, any 4xx/5xx)")
    retry_after: int = _setting(None, "seconds for their Retry-After header; none: no header")
    reset_rate: float = _setting(0.0, "share of responses cut by a TCP RST after half the body")
    corrupt_rate: float = _setting(0.0, "share of bodies sent with one byte flipped")
    stall_rate: float = _setting(0.0, "share of requests met with STALL_SECONDS of silence")
    stall_seconds: float = _setting(5.0, "length of a stall, after which service is normal")
    close_before_headers_rate: float = _setting(
        0.0, "share of requests whose connection is closed before any answer")
    fault_kinds: tuple = _setting(FAULT_KINDS, "request kinds random faults apply to, "
                                               "comma-separated")
    fault_seed: int = _setting(0, "seed of the random-fault generator")
    rate_limit: float = _setting(0.0, "requests per second a client may send; above it: 429 "
                                      "(0: no limit)")
    rate_limit_retry_after: int = _setting(1, "seconds in the Retry-After of those 429s")
    scrape_min_count: int = _setting(100, "smallest scrape page (archive.org clamps count "
                                          "to >= 100; tests may use 1)")

    def update(self, changes):
        """Apply ``changes`` (a dict of the fields above); ValueError names a bad one."""
        checked = {name: _checked(name, value) for name, value in changes.items()}
        for name, value in checked.items():
            setattr(self, name, value)

    def as_dict(self):
        values = dataclasses.asdict(self)
        values["fault_kinds"] = list(self.fault_kinds)
        return values


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _checked(name, value):
    if name not in _FIELDS:
        raise ValueError(f"unknown setting {name!r} (known: {', '.join(_FIELDS)})")
    try:
        return _convert(name, value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad value for {name}: {value!r} ({exc})") from None


def _convert(name, value):
    if name in _RATES:
        rate = float(value)
        if not 0.0 <= rate <= 1.0:
            raise ValueError("a rate must be between 0 and 1")
        return rate
    if name == "bandwidth":
        return parse_size(value) if isinstance(value, str) else int(value or 0)
    if name == "status":
        if not 400 <= int(value) <= 599:
            raise ValueError("status must be 4xx or 5xx")
        return int(value)
    if name == "fault_kinds":
        kinds = value.split(",") if isinstance(value, str) else list(value)
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        return tuple(kinds)
    if name == "retry_after":
        return None if value is None else int(value)
    if name in ("fault_seed", "scrape_min_count", "rate_limit_retry_after"):
        return int(value)
    return float(value)
