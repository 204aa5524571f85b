"""ia-fetch under overload, judged by the emulator's request log: a refused
request waits for its Retry-After while the others go on; a host in a burst
is left alone for the announced time and approached with fewer connections;
a 429 stops every request; files come straight from the storage node."""

import time
import urllib.parse

import requests

from iatools.fetching.bwlimit import parse_timetable, rate_at
from iatools.fetching.hostpacing import HostPacing
from iatools.fetching.storagenodes import node_base
from tests.emulator import Catalog, FileSpec
from tests.test_fetch import fetch, outcomes
from tests.trees import catalog_md5s, tree_md5s

#: A request sent in the instant before ia-fetch reads a refusal is fair.
GRACE = 0.05
#: The log's ``end`` is taken just before a response's last write, so a
#: client reads a refusal a hair after it; this much clock slack is allowed.
SLACK = 0.01


def jobs_of(catalog):
    return [{"id": item.identifier} for item in catalog.sorted_items()]


def node_of(emu, identifier):
    return emu.catalog.items[identifier].servers[0]


def test_a_refused_request_waits_for_its_retry_after_while_the_others_go_on(
        make_emulator, tmp_path):
    catalog = Catalog.generate(items=30, files_per_item=2, file_size=4 * 1024)
    emu, env = make_emulator(catalog, latency=0.03)
    emu.inject("*/items/demo-0003/demo-0003_01.bin", ["503:2"])
    process, _ = fetch(env, jobs_of(catalog), "-j", "4", "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    assert tree_md5s(tmp_path) == catalog_md5s(catalog)
    log = emu.stats()["requests"]
    refused = next(r for r in log if r["fault"] == "503:2")
    again = [r for r in log if r["path"].endswith("/demo-0003/demo-0003_01.bin")
             and r["start"] > refused["start"]]
    assert again and min(r["start"] for r in again) >= refused["end"] + 2 - SLACK
    during = [r for r in log if refused["end"] < r["start"] < refused["end"] + 2]
    assert len(during) > 10, "the workers waited with the refused request"


def test_a_host_in_a_burst_is_left_alone_while_the_others_are_served(make_emulator, tmp_path):
    catalog = Catalog.generate(items=12, files_per_item=2, file_size=4 * 1024)
    catalog.add_item("busy", [FileSpec(f"part{i:02d}.bin", 4 * 1024) for i in range(24)])
    emu, env = make_emulator(catalog, latency=0.03)
    node = node_of(emu, "busy")
    emu.faults.bursts.start(node, seconds=3, retry_after=2)  # longer than a loaded start-up
    process, _ = fetch(env, jobs_of(catalog), "-v", "-j", "4",
                       "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    assert tree_md5s(tmp_path) == catalog_md5s(catalog)
    log = emu.stats()["requests"]
    refusals = [r for r in log if r["host"] == node and r["status"] == 503]
    assert len(refusals) >= 2
    second = sorted(refusals, key=lambda r: r["end"])[1]
    announced = second["end"] + 2
    to_node = [r for r in log if r["host"] == node
               and second["end"] + GRACE < r["start"] < announced - SLACK]
    assert to_node == [], f"{len(to_node)} requests reached {node} during its pause"
    elsewhere = [r for r in log if r["host"] != node and second["end"] < r["start"] < announced]
    assert len(elsewhere) > 10, "the other hosts were not served during the pause"
    stderr = process.stderr.decode()
    assert f"slowing down: {node} refused" in stderr and "HTTP 503" in stderr, stderr


def test_concurrency_to_a_refusing_host_halves_then_recovers(make_emulator, tmp_path):
    catalog = Catalog()
    catalog.add_item("wide", [FileSpec(f"part{i:02d}.bin", 48 * 1024) for i in range(64)])
    emu, env = make_emulator(catalog, bandwidth=192 * 1024)  # 0.25 s a file
    node = node_of(emu, "wide")
    # The first four requests, whenever ia-fetch has started: a short burst.
    emu.inject("*/items/wide/*", ["503:1"] * 4)
    process, _ = fetch(env, [{"id": "wide"}], "-j", "4", "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    assert tree_md5s(tmp_path) == catalog_md5s(catalog)
    served = [r for r in emu.stats()["requests"] if r["host"] == node and r["status"] == 200]
    first = min(r["start"] for r in served)
    early = _peak_concurrency(served, first, first + 0.8)
    late = _peak_concurrency(served, first + 2.5, max(r["end"] for r in served))
    assert early <= 2, f"{early} transfers at once right after the burst"
    assert late == 4, f"concurrency came back to {late}, not 4"


def _peak_concurrency(requests, since, until):
    """The most ``requests`` in flight at once between ``since`` and ``until``."""
    moments = sorted({r["start"] for r in requests if since <= r["start"] <= until})
    return max((sum(r["start"] <= t < r["end"] for r in requests) for t in moments), default=0)


def test_a_429_stops_every_request_for_its_retry_after(make_emulator, tmp_path):
    catalog = Catalog.generate(items=30, files_per_item=2, file_size=4 * 1024)
    emu, env = make_emulator(catalog, latency=0.03)
    emu.inject("/metadata/demo-0004", ["429:2"])
    process, _ = fetch(env, jobs_of(catalog), "-v", "-j", "4", "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    assert tree_md5s(tmp_path) == catalog_md5s(catalog)
    log = emu.stats()["requests"]
    refused = next(r for r in log if r["fault"] == "429:2")
    during = [r for r in log if refused["end"] + GRACE < r["start"] < refused["end"] + 2 - SLACK]
    assert during == [], f"{len(during)} requests during the 429's Retry-After"
    assert "every host paused" in process.stderr.decode()


def test_the_rate_limiter_is_obeyed_and_the_run_completes(make_emulator, tmp_path):
    catalog = Catalog.generate(items=20, files_per_item=2, file_size=4 * 1024)
    emu, env = make_emulator(catalog, rate_limit=40, rate_limit_retry_after=1)
    process, _ = fetch(env, jobs_of(catalog), "-j", "4", "--retries", "10",
                       "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    assert tree_md5s(tmp_path) == catalog_md5s(catalog)
    log = emu.stats()["requests"]
    limited = [r for r in log if r["status"] == 429]
    assert limited, "the limiter never answered 429: the test proves nothing"
    for refused in limited:
        during = [r for r in log if refused["end"] + GRACE < r["start"] < refused["end"] + 1 - SLACK]
        assert during == [], f"{len(during)} requests during a 429's Retry-After"


def test_files_come_straight_from_the_node_and_a_moved_item_is_still_found(
        make_emulator, tmp_path):
    catalog = Catalog.generate(items=6, files_per_item=3, file_size=4 * 1024)
    emu, env = make_emulator(catalog, mode="https")
    emu.inject("*/items/demo-0002/demo-0002_02.bin", ["404"])  # not where the metadata says
    process, events = fetch(env, jobs_of(catalog), "-j", "4", "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    assert tree_md5s(tmp_path) == catalog_md5s(catalog)
    assert all(e["event"] == "completed" for e in outcomes(events).values())
    stats = emu.stats()
    redirects = [r["path"] for r in stats["requests"] if r["kind"] == "redirect"]
    assert redirects == ["/download/demo-0002/demo-0002_02.bin"]
    assert stats["requests_by_kind"]["storage"] == 6 * 3 + 1


def test_the_metadata_names_the_node_and_directory_the_download_redirects_to(emulator):
    emu, _ = emulator
    item = emu.catalog.sorted_items()[0]
    name = next(iter(item.files))
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"http": emu.url}
    metadata = session.get(f"http://archive.org/metadata/{item.identifier}", timeout=5).json()
    assert metadata["d1"] in metadata["workable_servers"]
    redirect = session.get(
        f"http://archive.org/download/{item.identifier}/{urllib.parse.quote(name)}",
        allow_redirects=False, timeout=5)
    location = urllib.parse.urlsplit(redirect.headers["Location"])
    assert location.hostname == metadata["d1"]
    assert urllib.parse.unquote(location.path) == f"{metadata['dir']}/{name}"


def test_bwlimit_holds_across_all_workers(make_emulator, tmp_path):
    size, count, jobs = 32 * 1024, 64, 4
    catalog = Catalog()
    catalog.add_item("wide", [FileSpec(f"part{i:02d}.bin", size) for i in range(count)])
    emu, env = make_emulator(catalog)
    rate = 256 * 1024  # 8 s for the 2 MiB: short enough for the suite (the bench takes 30 s)
    process, _ = fetch(env, [{"id": "wide"}], "-j", str(jobs), "--bwlimit", "256K",
                       "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    assert tree_md5s(tmp_path) == catalog_md5s(catalog)
    # Request N + k starts once file k is paid for (whether the files go in
    # step or staggered), so the starts tick at the rate ia-fetch allows
    # itself: the socket buffers, which fill at once, do not blur them as
    # they blur the times bodies are sent.
    starts = sorted(r["start"] for r in emu.stats()["requests"] if r["kind"] == "storage")
    assert len(starts) == count
    paid = (count - 2 * jobs) * size
    achieved = paid / (starts[count - jobs] - starts[jobs])
    assert 0.95 * rate <= achieved <= 1.05 * rate, f"{achieved / 1024:.0f} KiB/s"


def test_bwlimit_timetable_gives_each_hour_its_rate():
    table = parse_timetable("08:00,512K 19:00,10M 23:00,off")
    at = lambda hour, minute: time.mktime((2026, 12, 6, hour, minute, 0, 0, 0, -1))  # noqa: E731
    assert rate_at(table, at(7, 59)) is None  # the night's "off" runs past midnight
    assert rate_at(table, at(8, 0)) == 512 * 1024
    assert rate_at(table, at(18, 59)) == 512 * 1024
    assert rate_at(table, at(19, 0)) == 10 << 20
    assert rate_at(table, at(23, 30)) is None
    assert parse_timetable("1.5M") == [(0, int(1.5 * (1 << 20)))]


def test_a_bad_bwlimit_is_a_usage_error_before_any_request(emulator, tmp_path):
    emu, env = emulator
    for bad in ("fast", "25:00,1M", "08:00,1M 08:00,2M", "0"):
        process, _ = fetch(env, [{"id": "demo-0001"}], "--bwlimit", bad, "-d", str(tmp_path))
        assert process.returncode == 2, (bad, process.stderr)
        assert b"--bwlimit" in process.stderr
    assert emu.stats()["requests_total"] == 0


def test_a_file_is_asked_from_its_node_only_when_the_metadata_names_one_safely():
    good = {"d1": "ia801.us.archive.org", "d2": "ia601.us.archive.org",
            "workable_servers": ["ia601.us.archive.org", "ia801.us.archive.org"],
            "dir": "/7/items/x y"}
    assert node_base(good, "https") == "https://ia801.us.archive.org/7/items/x%20y"
    assert node_base({**good, "workable_servers": ["ia601.us.archive.org"]}, "http") == \
        "http://ia601.us.archive.org/7/items/x%20y"  # d1 is not workable: d2
    for field in ("workable_servers", "dir"):
        assert node_base({k: v for k, v in good.items() if k != field}, "https") is None
    assert node_base({**good, "workable_servers": []}, "https") is None
    assert node_base({**good, "d1": "evil.example.com", "d2": None,
                      "workable_servers": ["evil.example.com"]}, "https") is None
    assert node_base({**good, "dir": "/7/items/../../etc"}, "https") is None
    assert node_base({**good, "dir": "relative"}, "https") is None


def test_the_emulator_bursts_per_host_and_limits_each_client(make_emulator):
    emu, _ = make_emulator(latency=0)
    item = emu.catalog.sorted_items()[0]
    name = next(iter(item.files))
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"http": emu.url}
    node_url = f"http://{item.servers[0]}{item.dir}/{urllib.parse.quote(name)}"
    metadata_url = f"http://archive.org/metadata/{item.identifier}"
    control = f"{emu.url}/_emu/burst"
    assert session.post(control, json={"host": item.servers[0], "seconds": 0.5},
                         timeout=5).json() == {"ok": True}
    refused = session.get(node_url, timeout=5)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert session.get(metadata_url, timeout=5).status_code == 200  # other hosts serve
    time.sleep(0.6)
    assert session.get(node_url, timeout=5).status_code == 200  # recovered
    emu.configure(rate_limit=5, rate_limit_retry_after=3)
    statuses = [session.get(metadata_url, timeout=5).status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5 and set(statuses[5:]) == {429}
    log = emu.stats()["requests"]
    assert all(r["host"] and r["start"] <= r["end"] for r in log)
    assert [r["fault"] for r in log if r["status"] == 429] == ["429:3"] * 3


def test_pauses_that_overlap_extend_and_never_add_up():
    pacing = HostPacing(8)
    started = time.monotonic()
    pacing.refused("archive.org", 429, 2)
    pacing.refused("ia801.us.archive.org", 429, 1)  # inside the first: changes nothing
    assert started + 2 <= pacing.ready_at("any.host") < started + 2.1
    pacing.refused("archive.org", 429, 3)  # beyond it: the pause ends later, not 5 s on
    assert started + 3 <= pacing.ready_at("any.host") < started + 3.1
    node, burst = "ia802.us.archive.org", HostPacing(8)
    for seconds in (2, 2, 1, 2):  # refused again and again within the pause
        burst.refused(node, 503, seconds)
    assert time.monotonic() + 1.9 < burst.ready_at(node) < time.monotonic() + 2.1
    assert burst.try_acquire(node) is False and burst.try_acquire("archive.org") is True
