"""What the emulator saw: a request log and counters (``Emulator.stats()``,
``GET /_emu/stats``).

Each log entry: ``start``/``end`` (time.time()), ``method``, ``host``,
``path`` (decoded), ``query``, ``range`` (the Range header or None),
``status`` (None when the connection was closed or reset before one was
sent), ``bytes`` (body bytes sent), ``conn`` (connection id), ``tls``,
``kind`` (metadata, redirect, storage, scrape, control, connect, other),
``fault`` (e.g. "503:2", "reset", or None), ``user_agent``, ``auth`` (an
Authorization header was present).

Counters: ``connections`` (TCP connections accepted), ``tunnels`` (CONNECTs),
``requests_total``, ``requests_by_kind``, ``requests_by_status``,
``bytes_by_file`` (body bytes served per "ID/NAME" by storage hosts),
``active_transfers`` and ``peak_active_transfers`` (storage bodies being
sent at once).  A request is logged just *before* its last write, so a
client that has read a whole response always finds it here.
"""

import collections
import contextlib
import threading

#: The log keeps the newest entries only; counters count everything.
LOG_LIMIT = 100_000


class Stats:
    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        with self._lock:
            self._log = collections.deque(maxlen=LOG_LIMIT)
            self._connections = 0
            self._tunnels = 0
            self._by_kind = collections.Counter()
            self._by_status = collections.Counter()
            self._file_bytes = collections.Counter()
            self._active = 0
            self._peak_active = 0

    def connection_opened(self):
        with self._lock:
            self._connections += 1

    def tunnel_opened(self):
        with self._lock:
            self._tunnels += 1

    def record(self, entry, file_key=None):
        """Log a request; its ``bytes`` count for ``file_key`` ("ID/NAME")."""
        with self._lock:
            self._log.append(entry)
            self._by_kind[entry["kind"]] += 1
            self._by_status[str(entry["status"])] += 1
            if file_key:
                self._file_bytes[file_key] += entry["bytes"]

    def unsent(self, entry, file_key, count, recorded):
        """Take back ``count`` bytes counted as sent that never went out."""
        with self._lock:
            entry["bytes"] -= count
            if recorded and file_key:
                self._file_bytes[file_key] -= count

    @contextlib.contextmanager
    def transfer(self):
        """Counts a storage body being sent, for ``peak_active_transfers``."""
        with self._lock:
            self._active += 1
            self._peak_active = max(self._peak_active, self._active)
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1

    def snapshot(self, with_log=True):
        """A JSON-ready dict of the counters, plus ``requests`` (the log)."""
        with self._lock:
            result = {
                "connections": self._connections,
                "tunnels": self._tunnels,
                "requests_total": sum(self._by_kind.values()),
                "requests_by_kind": dict(self._by_kind),
                "requests_by_status": dict(self._by_status),
                "bytes_by_file": dict(self._file_bytes),
                "active_transfers": self._active,
                "peak_active_transfers": self._peak_active,
            }
            if with_log:
                result["requests"] = [dict(entry) for entry in self._log]
            return result
