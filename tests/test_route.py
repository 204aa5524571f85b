"""ia-route against real disks: tmpfs mounts made by each test (skipped
where mounting is not permitted), real pipes, real signals, and in the end
the whole pipeline through ia-fetch."""

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from iatools.base.status import ExitStatus
from tests.emulator import Catalog
from tests.helpers import REPO, base_env, command, jsonl_bytes, parse_jsonl, run
from tests.trees import catalog_md5s, tree_md5s

M = 1 << 20
ROUTE = command("ia-route")


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(name, size)`` mounts a tmpfs of ``size`` bytes under tmp_path."""
    mounted = []

    def mount(name, size, options=""):
        path = tmp_path / name
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs",
                               str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(disk, size, name="filler"):
    path = Path(disk) / name
    path.write_bytes(b"\0" * size)
    return path


def room(disk):
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize


def route(*args, jobs=(), input=None):
    data = input if input is not None else jsonl_bytes(jobs)
    return run([ROUTE, *map(str, args)], input=data)


def destdirs(result):
    return [job["destdir"] for job in parse_jsonl(result.stdout)]


class Interactive:
    """ia-route fed line by line through a real pipe, its output read as it comes."""

    def __init__(self, *args):
        self.process = subprocess.Popen([ROUTE, *map(str, args)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env=base_env())
        self.stderr = b""

    def send(self, *jobs):
        self.process.stdin.write(jsonl_bytes(jobs))
        self.process.stdin.flush()

    def read_job(self, timeout=20):
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, f"no output within {timeout}s; stderr: {self.read_stderr(0.1)}"
        return json.loads(self.process.stdout.readline())

    def has_output(self, within):
        return bool(select.select([self.process.stdout], [], [], within)[0])

    def read_stderr(self, within, until=None):
        """Read stderr for up to ``within`` seconds, or until ``until`` shows."""
        deadline = time.monotonic() + within
        fd = self.process.stderr.fileno()
        while (left := deadline - time.monotonic()) > 0 and not (until and until in self.stderr):
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                self.stderr += chunk
        return self.stderr.decode()

    def finish(self, timeout=30):
        self.process.stdin.close()
        rest = self.process.stdout.read()
        status = self.process.wait(timeout)
        self.stderr += self.process.stderr.read()
        return status, parse_jsonl(rest)


# -------------------------------------------------------------- the JSONL contract

def test_fields_order_and_odd_lines(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    lines = [
        b'{"id":"x1","size":5,"batch":"7","n":-3,"ok":true,"none":null}',
        b'{ "id" : "x2" ,  "note": "caf\\u00e9" }',
        b'{"event":"failed","id":"x3","error":"boom","retryable":true,"destdir":"/old","u":1}',
        b'{"id":"x4","destdir":"/mine","u":[1,2]}',
        b"",
        b"# a comment",
        b'{"id":"../evil"}',
        b"[1, 2]",
        b'{"id":"x5","file":"dir/f.txt","size":9}',
    ]
    result = route("--no-disk-check", "-d", a, "-d", b, input=b"\n".join(lines) + b"\n")
    assert result.returncode == ExitStatus.FAILED
    out = result.stdout.splitlines()
    assert len(out) == 5, result.stdout
    for line in out:
        assert line.count(b'"destdir"') == 1
    # Plain and odd lines alike keep their bytes; the destdir comes last.
    assert out[0].startswith(lines[0][:-1] + b',"destdir":"')
    assert out[1].startswith(lines[1].rstrip()[:-1] + b',"destdir":"')
    # An event comes back as its job, which keeps its destdir (no --force).
    assert json.loads(out[2]) == {"id": "x3", "destdir": "/old", "u": 1}
    assert out[3] == lines[3]
    assert json.loads(out[4])["file"] == "dir/f.txt"
    assert {json.loads(line)["destdir"] for line in out[:2]} <= {str(a), str(b)}
    stderr = result.stderr.decode()
    assert "ia-route: error: input line 7: " in stderr
    assert "ia-route: error: input line 8: not a JSON object" in stderr
    forced = route("--no-disk-check", "--force", "-d", a, input=lines[3] + b"\n")
    assert parse_jsonl(forced.stdout) == [{"id": "x4", "destdir": str(a), "u": [1, 2]}]
    assert forced.returncode == 0


def test_no_disk_check_spreads_items_and_never_splits_one(tmp_path):
    disks = [tmp_path / name for name in "abc"]
    for disk in disks:
        disk.mkdir()
    (disks[2] / "item-0007").mkdir()  # already begun on c
    # File jobs of 300 items, an item's jobs far apart in the stream.
    jobs = [{"id": f"item-{n:04d}", "file": f"f{k}.bin", "size": 10}
            for k in range(3) for n in range(300)]
    args = ["--no-disk-check"] + [a for d in disks for a in ("-d", d)]
    first, second = route(*args, jobs=jobs), route(*args, jobs=jobs)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout  # the same disks in every run
    where = {}
    for job in parse_jsonl(first.stdout):
        where.setdefault(job["id"], set()).add(job["destdir"])
    assert all(len(places) == 1 for places in where.values())
    assert where["item-0007"] == {str(disks[2])}
    counts = [sum(places == {str(d)} for places in where.values()) for d in disks]
    assert all(60 <= count <= 140 for count in counts), counts


def test_a_tenth_of_a_second_is_not_spent_importing(tmp_path):
    """--version and --no-disk-check load neither requests, internetarchive
    nor psutil (ia-route must start in well under 0.1 s)."""
    for args in (["--version"], ["--no-disk-check", "-d", str(tmp_path)]):
        probe = subprocess.run([sys.executable, "-X", "importtime", "-m", "iatools.commands.route", *args],
                               cwd=REPO, capture_output=True, input=b'{"id":"x"}\n')
        assert probe.returncode == 0, probe.stderr
        imported = {line.split("|")[-1].strip() for line in probe.stderr.decode().splitlines()
                    if line.startswith("import time:")}
        assert "iatools.contract.jsonl" in imported  # the probe did see the imports
        assert not imported & {"requests", "internetarchive", "psutil", "urllib3"}, args


# -------------------------------------------------------------- free space

def test_routes_by_free_space_with_reservations_then_stops_with_no_wait(tmpfs):
    a, b = tmpfs("a", 8 * M), tmpfs("b", 8 * M)
    fill(a, 2 * M)
    jobs = [{"id": f"i{n:02d}", "size": M} for n in range(20)]
    result = route("-d", a, "-d", b, "--margin", "1M", "--no-wait", jobs=jobs)
    assert result.returncode == ExitStatus.NO_SPACE, result.stderr
    placed = destdirs(result)
    # Room: a 8 - 2 - 1 = 5 MiB, b 7 MiB.  The emptier disk first; a burst
    # does not all go there, because each job reserves its size.
    assert placed[:2] == [str(b), str(b)]
    assert placed.count(str(a)) == 5 and placed.count(str(b)) == 7
    assert [job["id"] for job in parse_jsonl(result.stdout)] == [f"i{n:02d}" for n in range(12)]
    stderr = result.stderr.decode()
    assert "ia-route: error: no disk has room for i12 " in stderr and "--no-wait" in stderr


def test_a_reservation_is_released_as_the_disk_fills(tmpfs):
    disk = tmpfs("d", 6 * M)
    route_ = Interactive("-d", disk, "--margin", "1M", "--no-wait")
    route_.send({"id": "one", "size": 2 * M})
    assert route_.read_job()["destdir"] == str(disk)
    fill(disk, 2 * M, "one.bin")  # as ia-fetch would write it
    # 6 - 1 - 2 written = 3 MiB: room, had the reservation not been released.
    route_.send({"id": "two", "size": 2 * M})
    assert route_.read_job()["id"] == "two"
    route_.send({"id": "three", "size": 2 * M})  # 1 MiB left beyond two's reservation
    status, rest = route_.finish()
    assert status == ExitStatus.NO_SPACE and rest == []
    assert "no disk has room for three" in route_.stderr.decode()


def test_the_margin_holds_with_sizes_unknown(tmpfs):
    a, b = tmpfs("a", 4 * M), tmpfs("b", 4 * M)
    jobs = [{"id": f"i{n}"} for n in range(10)]
    result = route("-d", a, "-d", b, "--margin", "1M", "--assume-size", "1M", "--no-wait",
                   jobs=jobs)
    assert result.returncode == ExitStatus.NO_SPACE
    placed = destdirs(result)
    assert sorted(placed) == [str(a)] * 3 + [str(b)] * 3
    assert placed[:2] == [str(a), str(b)]  # a tie goes to the first disk


def test_a_job_larger_than_any_disk_is_reported_and_skipped(tmpfs):
    a, b = tmpfs("a", 4 * M), tmpfs("b", 6 * M)
    jobs = [{"id": "small", "size": M}, {"id": "huge", "size": 6 * M}, {"id": "after"}]
    result = route("-d", a, "-d", b, "--margin", "1M", "--assume-size", "1M", jobs=jobs)
    assert result.returncode == ExitStatus.FAILED
    assert [job["id"] for job in parse_jsonl(result.stdout)] == ["small", "after"]
    assert "ia-route: error: huge: 6.0 MiB is more than any disk holds" in result.stderr.decode()


# -------------------------------------------------------------- existing items

def test_an_item_already_on_a_disk_goes_back_there(tmpfs):
    a, b = tmpfs("a", 16 * M), tmpfs("b", 8 * M)
    (b / "partial").mkdir()
    fill(b / "partial", 2 * M, "part1.bin")
    (b / "complete").mkdir()
    fill(b / "complete", M, "all.bin")
    fill(b, room(b) - M - 3 * M // 2)  # 1.5 MiB beyond the margin
    jobs = [
        {"id": "partial", "size": 3 * M},  # needs only the 1 MiB it lacks
        {"id": "complete"},  # no size: nothing is set aside for it
        {"id": "partial", "file": "part2.bin", "size": M // 2},  # the 0.5 MiB left
        {"id": "new", "size": M},  # no room left on b
    ]
    result = route("-d", a, "-d", b, "--margin", "1M", "--no-wait", jobs=jobs)
    assert result.returncode == 0, result.stderr
    assert destdirs(result) == [str(b), str(b), str(b), str(a)]


def test_two_routes_at_once_send_a_new_item_to_one_disk(tmpfs):
    """The second ia-route lists the disks before the first sends "shared"
    anywhere; when "shared" reaches it, the other disk has far more room."""
    a, b = tmpfs("a", 16 * M), tmpfs("b", 8 * M)
    first, second = (Interactive("-d", a, "-d", b, "--margin", "1M") for _ in range(2))
    second.send({"id": "started", "size": M})
    assert second.read_job()["destdir"] == str(a)
    first.send({"id": "shared", "size": M})
    assert first.read_job()["destdir"] == str(a)
    assert sorted(os.listdir(a)) == ["shared", "started"]  # claimed as routed
    fill(a, room(a) - 2 * M)  # 1 MiB beyond the margin, against b's 7 MiB
    time.sleep(0.3)  # free space is read again after 0.2 s
    second.send({"id": "shared", "file": "f", "size": M // 2})
    assert second.read_job()["destdir"] == str(a)
    second.send({"id": "new", "size": M // 2})
    assert second.read_job()["destdir"] == str(b)
    assert [r.finish()[0] for r in (first, second)] == [0, 0]
    assert os.listdir(b) == ["new"]


def test_an_item_already_on_a_full_disk_waits_for_it(tmpfs):
    a, b = tmpfs("a", 16 * M), tmpfs("b", 4 * M)
    (b / "item").mkdir()
    fill(b, room(b) - M // 2)
    result = route("-d", a, "-d", b, "--margin", "1M", "--no-wait",
                   jobs=[{"id": "item", "size": 2 * M}])
    assert result.returncode == ExitStatus.NO_SPACE
    assert result.stdout == b""  # never split onto the disk with room


# -------------------------------------------------------------- waiting

def test_waits_once_blocks_and_goes_on_when_space_is_freed(tmpfs):
    disk = tmpfs("d", 4 * M)
    filler = fill(disk, room(disk) - M - 3 * M // 2)  # 1.5 MiB beyond the margin
    route_ = Interactive("-d", disk, "--margin", "1M", "--wait", "0.2")
    # In one batch: "waits" needs more than "fits" leaves, and more than
    # there is once the reservation of "fits" (never written) lapses.
    route_.send({"id": "fits", "size": M}, {"id": "waits", "size": 2 * M})
    # What was routed before the wait is written out at once.
    assert route_.read_job()["id"] == "fits"
    stderr = route_.read_stderr(20, until=b"waiting")
    assert "ia-route: warning: no disk has room for waits " in stderr
    assert not route_.has_output(1.0), "routed a job with no room"
    route_.read_stderr(1.0)  # several checks go by, each silent
    assert route_.stderr.count(b"waiting") == 1
    filler.unlink()
    assert route_.read_job()["id"] == "waits"
    route_.send({"id": "last", "size": M})
    status, rest = route_.finish()
    assert status == 0 and [job["id"] for job in rest] == ["last"]
    assert route_.stderr.count(b"waiting") == 1
    assert b"room for waits on " in route_.stderr


def test_a_waiting_route_ends_at_once_on_sigterm(tmpfs):
    disk = tmpfs("d", 4 * M)
    fill(disk, room(disk) - M)
    route_ = Interactive("-d", disk, "--margin", "1M")  # checks every 30 s
    route_.send({"id": "waits", "size": M})
    assert "waiting" in route_.read_stderr(20, until=b"waiting")
    route_.process.send_signal(signal.SIGTERM)
    assert route_.process.wait(5) == ExitStatus.INTERRUPTED


# -------------------------------------------------------------- disks

def test_bad_disks_are_refused_at_start(tmpfs, tmp_path):
    good = tmpfs("good", 4 * M)
    readonly = tmpfs("ro", 4 * M, ",ro")
    other = tmp_path / "other"
    other.mkdir()
    (tmp_path / "file").write_text("x")
    cases = {
        (tmp_path / "missing",): "No such file or directory",
        (tmp_path / "file",): "not a directory",
        (readonly,): "read-only filesystem",
        (good, good): "is given twice",
        (other, tmp_path): "are on one filesystem",
        (good, "--margin", "4M"): "not more than --margin",
    }
    for args, says in cases.items():
        argv = []
        for arg in args:
            argv += ["-d", arg] if isinstance(arg, Path) else [arg]
        result = route(*argv, "--margin", "1M", jobs=[{"id": "x"}]) if "--margin" not in argv \
            else route(*argv, jobs=[{"id": "x"}])
        assert result.returncode == ExitStatus.USAGE, (args, result.stderr)
        assert result.stdout == b""
        stderr = result.stderr.decode()
        assert stderr.startswith("ia-route: error: ") and says in stderr, (args, stderr)


def test_a_disk_that_turns_read_only_is_dropped(tmpfs):
    a, b = tmpfs("a", 16 * M), tmpfs("b", 8 * M)
    route_ = Interactive("-d", a, "-d", b, "--margin", "1M")
    route_.send({"id": "first", "size": M})
    assert route_.read_job()["destdir"] == str(a)
    remount = subprocess.run(["mount", "-o", "remount,ro", str(a)], capture_output=True)
    assert remount.returncode == 0, remount.stderr
    time.sleep(0.5)  # free space is read again after 0.2 s
    route_.send({"id": "second", "size": M}, {"id": "first", "file": "more.bin", "size": M})
    assert route_.read_job()["destdir"] == str(b)
    status, rest = route_.finish()
    assert status == ExitStatus.FAILED and rest == []
    stderr = route_.stderr.decode()
    assert f"ia-route: warning: disk {a}: read-only filesystem; dropped" in stderr
    assert f"ia-route: error: first/more.bin: its item is on {a}, which was dropped" in stderr


# -------------------------------------------------------------- end to end

def test_a_collection_larger_than_any_disk_lands_whole_across_them(make_emulator, tmpfs):
    """ia-resolve | ia-route | ia-fetch: every file right, no item split,
    no disk ever past its margin (sampled during the run)."""
    catalog = Catalog.generate(items=16, files_per_item=2, file_size=256 * 1024)
    assert catalog_total(catalog) == 8 * M
    emu, env = make_emulator(catalog, bandwidth=8 * M)
    disks = [tmpfs("a", 6 * M), tmpfs("b", 6 * M)]
    lowest = {str(d): room(d) for d in disks}
    stop = threading.Event()

    def sample():
        while not stop.wait(0.01):
            for d in disks:
                lowest[str(d)] = min(lowest[str(d)], room(d))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    pipeline = (f"{command('ia-resolve')} --search collection:demo"
                f" | {ROUTE} -d {disks[0]} -d {disks[1]} --margin 1M"
                f" | {command('ia-fetch')} -q -j 4")
    try:
        done = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], env=env,
                              capture_output=True, timeout=120)
    finally:
        stop.set()
        sampler.join()
    assert done.returncode == 0, done.stderr.decode()
    events = parse_jsonl(done.stdout)
    assert sum(e["event"] == "completed" for e in events) == 16
    assert all(isinstance(e.get("size"), int) for e in events)  # routed by real sizes
    on_disk = [tree_md5s(d) for d in disks]
    assert all(on_disk), "everything landed on one disk"
    assert {**on_disk[0], **on_disk[1]} == catalog_md5s(catalog)
    items = [{name.split("/")[0] for name in files} for files in on_disk]
    assert not items[0] & items[1], "an item was split across the disks"
    assert all(low >= M for low in lowest.values()), lowest


def catalog_total(catalog):
    return sum(item.item_size for item in catalog.sorted_items())
