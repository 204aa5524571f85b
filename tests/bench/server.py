"""The emulator for a workload, in its own process: its threads then have a
GIL (and, on a multi-core machine, a core) of their own instead of sharing
the bench's, and its CPU is kept out of the contenders' accounting (it is
not a child of any contender)."""

import json
import os
import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.helpers import REPO, base_env

VENV_BIN = REPO / ".venv" / "bin"


class EmulatorProcess:
    """``python -m tests.emulator serve`` with a generated plain catalog and
    the given settings (``latency=0.02``, ``bandwidth="16M"`` ...); clients
    reach it in https mode (CONNECT, then TLS per host) when ``https``."""

    def __init__(self, state_dir, *, items, files_per_item, file_size, https=False,
                 **settings):
        self.state_dir = Path(state_dir)
        self.https = https
        self.catalog_options = {"items": items, "files-per-item": files_per_item,
                                "file-size": file_size}
        self.settings = settings
        self.process = None
        self.url = None

    def __enter__(self):
        argv = [sys.executable, "-m", "tests.emulator", "serve", "--state-dir",
                str(self.state_dir), "--mix", "plain"]
        for name, value in {**self.catalog_options, **self.settings}.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        if self.https:
            argv.append("--https")
        self.process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, start_new_session=True)
        ready = self.process.stdout.readline()
        if not ready:
            raise RuntimeError("the emulator did not start: "
                               + self.process.stderr.read().decode(errors="replace"))
        self.url = json.loads(ready)["url"]
        return self

    def __exit__(self, *exc_info):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()

    def client_env(self):
        """What a client needs to reach the emulator (the exports of its
        env.sh), on a clean base with .venv/bin first on PATH."""
        extra = {}
        for line in (self.state_dir / "env.sh").read_text(encoding="utf-8").splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            extra[name] = shlex.split(value)[0] if value else ""
        env = base_env(**extra)
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
        return env

    def catalog(self):
        """[{"id", "name", "size", "md5", ...}] of every file served."""
        with open(self.state_dir / "catalog.jsonl", encoding="utf-8") as lines:
            return [json.loads(line) for line in lines]

    def configure(self, **settings):
        """Change settings while it runs (``POST /_emu/config``)."""
        return self._control("POST", "config", settings)

    def burst(self, host, seconds, retry_after=None):
        """``host`` refuses everything with 503 for ``seconds`` from now."""
        self._control("POST", "burst", {"host": host, "seconds": seconds,
                                        "retry_after": retry_after})

    def reset_stats(self):
        self._control("POST", "reset")

    def stats(self):
        """Counters and the request log since the last reset (``GET /_emu/stats``)."""
        return self._control("GET", "stats")

    def _control(self, method, endpoint, document=None):
        data = None if document is None else json.dumps(document).encode()
        request = urllib.request.Request(f"{self.url}/_emu/{endpoint}", method=method,
                                         data=data,
                                         headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as response:
            return json.load(response)


def transfer_phase(stats):
    """What the emulator saw of a run: requests by kind, and the storage
    phase (first body request to last body byte) with its MiB/s, free of
    the clients' start-up."""
    bodies = [r for r in stats["requests"] if r["kind"] == "storage"]
    phase = {"requests_by_kind": {kind: count for kind, count in
                                  stats["requests_by_kind"].items() if kind != "control"},
             "requests_by_status": stats["requests_by_status"]}
    if bodies:
        span = max(r["end"] for r in bodies) - min(r["start"] for r in bodies)
        sent = sum(r["bytes"] for r in bodies)
        phase.update(transfer_seconds=round(span, 3),
                     transfer_mib_per_s=round(sent / (1 << 20) / span, 2) if span else None)
    return phase
