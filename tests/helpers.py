"""Shared helpers for the tests: run the real commands as subprocesses."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / "bin"
PYTHON = sys.executable


def command(name):
    """Path of a command's launcher in bin/ (runs the checkout's code)."""
    return str(BIN / name)


def base_env(**extra):
    """The environment for a command under test: no proxies or ia config
    leaking in from the developer's shell, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
           and k not in ("IA_CONFIG_FILE", "REQUESTS_CA_BUNDLE")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run(args, input=b"", env=None, timeout=120, cwd=None):
    """Run a command to completion; ``args[0]`` may be a bare command name."""
    if isinstance(input, str):
        input = input.encode()
    return subprocess.run(args, input=input, capture_output=True, env=env or base_env(),
                          timeout=timeout, cwd=cwd)


def start_group(shell_pipeline, env=None, cwd=None, **kwargs):
    """Start a shell pipeline in its own process group with SIGINT restored to
    its default, so signals can be sent to the whole pipeline as a terminal
    would.  (A shell's background jobs inherit SIGINT ignored.)"""
    return subprocess.Popen(
        ["bash", "-c", shell_pipeline], env=env or base_env(), cwd=cwd,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def jsonl_bytes(records):
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def parse_jsonl(data):
    """Parse JSONL bytes; every line must be a JSON object."""
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def read_jsonl(path):
    return parse_jsonl(Path(path).read_bytes())


def processes_with(command_line):
    """The pids of the processes whose command line (its arguments joined
    by spaces) holds ``command_line``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                if command_line.encode() in file.read().replace(b"\0", b" "):
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found
