"""Shared helpers of the torture suite (tests/test_torture_*.py): whole
pipelines of real subprocesses joined by real pipes, and the invariants
every torture test checks on the disks and the log afterwards."""

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from iatools.fetching.locks import LOCK_SUFFIX
from iatools.fetching.transfer import TEMP_SUFFIX
from tests.helpers import command, parse_jsonl, run

#: The stages of the full pipeline, in order.
STAGES = ("resolve", "skip", "route", "fetch", "append")


def full_pipeline(log, disks, source, fetch_args=(), append="append"):
    """``[(stage, argv)]`` of ``ia-resolve SOURCE | ia-joblog skip LOG |
    ia-route -d DISK... | ia-fetch FETCH_ARGS | ia-joblog append LOG``."""
    route = [command("ia-route"), *route_options(disks)]
    for disk in disks:
        route += ["-d", str(disk)]
    return [
        ("resolve", [command("ia-resolve"), *source]),
        ("skip", [command("ia-joblog"), "skip", str(log)]),
        ("route", route),
        ("fetch", [command("ia-fetch"), *fetch_args]),
        ("append", [command("ia-joblog"), append, str(log)]),
    ]


def route_options(disks):
    """ia-route's options for these test disks: small margins on small
    filesystems (tmpfs mounts); --no-disk-check for directories that share
    one filesystem, which ia-route refuses to weigh against each other."""
    for disk in disks:
        Path(disk).mkdir(parents=True, exist_ok=True)
    if len({os.stat(disk).st_dev for disk in disks}) < len(disks):
        return ["--no-disk-check"]
    return ["--margin", "64K", "--assume-size", "256K"]


class Pipeline:
    """Stages started as a shell would start them: one process group, each
    stage's stdout piped into the next one's stdin, SIGINT at its default.
    Each stage's stderr goes to ``WORKDIR/STAGE.err``.

    ``relay_after``: the stage whose output passes through this process on
    its way to the next one, recorded in ``relayed`` (what it wrote, exactly
    and in full, even if the next stage dies).  ``stdout``: where the last
    stage writes; ``stderr_tty``: a terminal for ia-fetch's stderr."""

    def __init__(self, stages, env, workdir, relay_after=None, stdout=subprocess.DEVNULL,
                 stderr_tty=None):
        self.names = [name for name, _ in stages]
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.processes = {}
        self.relayed = bytearray()
        self._relay = None
        self.started = time.monotonic()
        upstream, owned, group = subprocess.DEVNULL, None, 0
        for position, (name, argv) in enumerate(stages):
            last = position == len(stages) - 1
            with open(self.workdir / f"{name}.err", "wb") as err:
                stderr = stderr_tty if (stderr_tty is not None and name == "fetch") else err
                process = subprocess.Popen(
                    argv, stdin=upstream, stdout=stdout if last else subprocess.PIPE,
                    stderr=stderr, env=env, cwd=self.workdir, process_group=group)
            if owned is not None:
                owned.close()  # only the stages hold their pipes
            group = group or process.pid
            self.processes[name] = process
            if not last:
                upstream = owned = (self._start_relay(process.stdout) if name == relay_after
                                    else process.stdout)
        self.pgid = group

    def _start_relay(self, source):
        read_end, write_end = os.pipe()

        def pump():
            with open(write_end, "wb", buffering=0) as sink:
                while data := os.read(source.fileno(), 1 << 16):
                    self.relayed += data
                    try:
                        sink.write(data)
                    except BrokenPipeError:
                        break
                while data := os.read(source.fileno(), 1 << 16):  # keep recording
                    self.relayed += data
            source.close()

        self._relay = threading.Thread(target=pump, daemon=True)
        self._relay.start()
        return open(read_end, "rb", buffering=0)

    def kill(self, stage, signum=signal.SIGKILL):
        """Signal one stage; False if it had already ended."""
        process = self.processes[stage]
        if process.poll() is not None:
            return False
        process.send_signal(signum)
        return True

    def signal_group(self, signum):
        os.killpg(self.pgid, signum)

    def wait(self, timeout=60):
        """``{stage: exit status}`` once all have ended (negative: killed)."""
        deadline = time.monotonic() + timeout
        statuses = {}
        for name, process in self.processes.items():
            try:
                statuses[name] = process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                raise AssertionError(f"the pipeline did not end within {timeout}s "
                                     f"(stuck: {name}); stderr: {self.stderr()}") from None
        if self._relay is not None:
            self._relay.join(timeout)
        return statuses

    def stderr(self, stage=None):
        names = [stage] if stage else self.names
        return {n: (self.workdir / f"{n}.err").read_bytes().decode("utf-8", "replace")
                for n in names}


def assert_no_traceback(pipeline):
    for stage, text in pipeline.stderr().items():
        assert "Traceback" not in text, f"{stage}:\n{text}"


# -- the disks ------------------------------------------------------------------
def is_temporary(path):
    return path.name.endswith(TEMP_SUFFIX)


def is_lock(path):
    return path.name.endswith(LOCK_SUFFIX)


def _regular_files(disk):
    disk = Path(disk)
    for path in sorted(disk.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path, str(path.relative_to(disk))


def final_files(disks):
    """``{"ID/NAME": [disk, ...]}`` of every file under a final name (not a
    temporary, not a lock) on ``disks``."""
    found = {}
    for disk in disks:
        for path, relative in _regular_files(disk):
            if not (is_temporary(path) or is_lock(path)):
                found.setdefault(relative, []).append(str(disk))
    return found


def tree(disks):
    """``{"ID/NAME": md5}`` of the final-named files; an "ID/NAME" found on
    two disks is an error (ia-route never splits an item)."""
    result = {}
    for relative, where in final_files(disks).items():
        assert len(where) == 1, f"{relative} is on several disks: {where}"
        result[relative] = md5_of(Path(where[0]) / relative)
    return result


def md5_of(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def partial_final_files(disks, expected):
    """Final-named files whose content is not what the emulator serves."""
    bad = []
    for relative, where in final_files(disks).items():
        for disk in where:
            try:
                digest = md5_of(Path(disk) / relative)
            except FileNotFoundError:
                continue  # replaced or removed while we looked
            if expected.get(relative) != digest:
                bad.append(f"{disk}/{relative}")
    return bad


def temporaries(disks):
    """``{"ID/NAME": bytes kept}`` of the resumable temporaries."""
    kept = {}
    for disk in disks:
        for path, relative in _regular_files(disk):
            if is_temporary(path):
                name = path.name[1:-len(TEMP_SUFFIX)]
                kept[str(Path(relative).parent / name)] = path.stat().st_size
    return kept


def locks(disks):
    return [str(path) for disk in disks for path, _ in _regular_files(disk) if is_lock(path)]


class FinalNameWatch:
    """Scans ``disks`` in a thread until stopped: every file that ever shows
    under its final name must already hold exactly the served bytes."""

    def __init__(self, disks, expected, interval=0.02):
        self.disks, self.expected, self.interval = disks, expected, interval
        self.bad = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()

    def _watch(self):
        while not self._stop.is_set():
            self.bad += partial_final_files(self.disks, self.expected)
            self.scans += 1
            self._stop.wait(self.interval)


@contextlib.contextmanager
def tmpfs(path, size):
    """A tmpfs of ``size`` bytes mounted at ``path``; skip when we cannot mount."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def snapshot(root):
    """Every path below ``root`` (symlinks not followed), for 'nothing was
    written outside' checks."""
    return {str(p) for p in Path(root).rglob("*")}


# -- the log and the emulator ---------------------------------------------------------
def log_events(path):
    """Every line of the log, which must each be a JSON object with an event."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "the log ends in a torn line"
    events = []
    for number, line in enumerate(data.split(b"\n")[:-1], 1):
        record = json.loads(line)  # raises on a torn or spliced line
        assert isinstance(record, dict) and isinstance(record.get("event"), str), \
            f"log line {number} is not an event: {line[:200]!r}"
        events.append(record)
    return events


def status(log, env):
    result = run([command("ia-joblog"), "status", "--json", str(log)], env=env)
    assert result.returncode == 0, result.stderr
    return parse_jsonl(result.stdout)[0]


def outcome_by_key(events):
    """The state ia-joblog derives: completed once completed, else the latest."""
    state = {}
    for event in events:
        key = event["id"] if "file" not in event else f"{event['id']}/{event['file']}"
        if state.get(key) == "completed":
            continue
        kind = event["event"]
        if kind in ("started", "failed", "completed"):
            state[key] = kind
        else:
            state.setdefault(key, "queued")
    return state


def assert_status_matches_log(log, env):
    """``ia-joblog status`` agrees with the log read line by line."""
    state = outcome_by_key(log_events(log))
    counts = status(log, env)
    expected = {"total": len(state),
                "completed": sum(s == "completed" for s in state.values()),
                "failed": sum(s == "failed" for s in state.values()),
                "in_progress": sum(s == "started" for s in state.values()),
                "pending": sum(s == "queued" for s in state.values())}
    assert {k: counts[k] for k in expected} == expected
    return state


def storage_requests(emu):
    return [r for r in emu.stats()["requests"] if r["kind"] == "storage"]


def file_key(request):
    """"ID/NAME" of a storage request's path ``/N/items/ID/NAME``."""
    return request["path"].split("/items/", 1)[1]


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
