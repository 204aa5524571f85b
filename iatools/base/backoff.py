"""Retry timing: exponential backoff with full jitter, and Retry-After."""

import email.utils
import random
import time

BASE_DELAY = 1.0
MAX_DELAY = 60.0
#: HTTP statuses worth retrying: timeouts, overload, server trouble.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def backoff_delay(attempt, base=BASE_DELAY, cap=MAX_DELAY):
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): a random
    time up to base * 2**(attempt-1), so refused clients do not return in step."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def retry_after_seconds(response, cap=3600.0):
    """The server's Retry-After (seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(when - time.time(), 0.0), cap)
