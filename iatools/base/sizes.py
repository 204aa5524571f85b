"""Sizes and durations as people write them: 1G, 500M, 4096 (binary
multiples); 90, 30s, 15m, 2h, 1d.  And the free space of a filesystem."""

import argparse
import os
import re

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*", re.IGNORECASE)


def parse_size(text):
    """Return bytes for ``text``; raise ValueError naming the text otherwise."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"invalid size {text!r} (use bytes or a K, M, G, T suffix)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


def parse_duration(text):
    """Return seconds for ``text``; raise ValueError naming the text otherwise."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"invalid duration {text!r} (use seconds or an s, m, h, d suffix)")
    number, unit = match.groups()
    return float(number) * _SECONDS[unit]


def format_size(n):
    """Human form with binary units, e.g. ``1.5 GiB``."""
    if abs(n) < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def format_duration(seconds):
    """``5d03h``, ``1h05m`` or ``3m07s``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _argument_type(parse):
    """An argparse ``type=`` from a parser raising ValueError."""
    def convert(text):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


size_argument = _argument_type(parse_size)
duration_argument = _argument_type(parse_duration)


def free_bytes(directory):
    """The bytes that may still be written in ``directory``'s filesystem
    (those reserved for root not counted); 0 if it cannot be asked."""
    try:
        stats = os.statvfs(directory)
    except OSError:
        return 0
    return stats.f_bavail * stats.f_frsize
