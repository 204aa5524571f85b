"""Torture: the emulator misbehaves in every way it knows, at random
(seeded) and on purpose, under the full pipeline.  Every file ends correct,
or its job failed saying truthfully why; no corrupt file ever sits under a
final name; a refused request waits for its Retry-After, and a 429 holds
back every request."""

import re

from tests.emulator import Catalog, FileSpec
from tests.torture import (FinalNameWatch, Pipeline, assert_no_traceback,
                           assert_status_matches_log, full_pipeline, locks, log_events, tree)
from tests.trees import catalog_md5s

SEED = 5
#: What a job's error says after each kind of fault.
SAYS = {
    # A flipped byte in a metadata body is never valid UTF-8, so never JSON.
    "corrupt": r"md5 mismatch|not JSON",
    "503": r"HTTP 503",
    "429": r"HTTP 429",
    "reset": r"closed early|connection broken|reset",
    "close": r"RemoteDisconnected|closed connection|connection (error|broken|closed)",
    "stall": r"timed out|timeout",
    "hang": r"timed out|timeout|closed early",
}
#: item -> (path pattern, the fault given to every attempt).  Random faults
#: hit these items too, so a failure may name one of those instead.
DOOMED = {
    "doom-corrupt": ("*/items/doom-corrupt/*", "corrupt"),
    "doom-503": ("re:/doom-503/", "503"),  # on the storage node and at /download/
    "doom-429": ("re:/doom-429/", "429:1"),
    "doom-reset": ("*/items/doom-reset/*", "reset"),
    "doom-close": ("/metadata/doom-close", "close"),
    "doom-stall": ("/metadata/doom-stall", "stall:4"),
}
RETRIES = 2
#: A Retry-After is honoured from the moment the refused worker reads it;
#: a request already on its way then is fair.
GRACE = 0.1


def catalog_with_doomed_items():
    catalog = Catalog.generate(items=10, files_per_item=2, file_size=64 * 1024, seed=SEED)
    for identifier in DOOMED:
        catalog.add_item(identifier, [FileSpec("f.bin", 32 * 1024)], collection="demo")
    return catalog


def test_faults_end_in_correct_files_or_truthful_failures_and_polite_backoff(
        make_emulator, tmp_path):
    catalog = catalog_with_doomed_items()
    emu, env = make_emulator(
        catalog, status_rate=0.04, status=503, reset_rate=0.04, corrupt_rate=0.04,
        close_before_headers_rate=0.04, fault_kinds=("metadata", "redirect", "storage"),
        fault_seed=SEED)
    for pattern, fault in DOOMED.values():
        emu.inject(pattern, [fault] * (3 * (RETRIES + 1)))
    emu.inject("/services/search/v1/scrape", ["close", "503:1"])
    emu.inject("/metadata/demo-0002", ["stall:4"])           # needs the read timeout
    emu.inject("*/items/demo-0003/*", ["hang:4"])            # silent mid-body
    emu.inject("re:/demo-0004/", ["429:1"])                  # every host waits
    emu.inject("*/items/demo-0006/*", ["503:1"])
    emu.inject("/metadata/demo-0007", ["close", "close"])
    disks = [tmp_path / "a", tmp_path / "b"]
    for disk in disks:
        disk.mkdir()
    log = tmp_path / "s.jsonl"
    stages = full_pipeline(log, disks, ["--search", "collection:demo"],
                           fetch_args=["-j", "4", "--retries", str(RETRIES), "--timeout", "1"])
    expected = catalog_md5s(catalog)
    with FinalNameWatch(disks, expected) as watch:
        pipeline = Pipeline(stages, env, tmp_path / "run")
        statuses = pipeline.wait(timeout=120)
    assert watch.bad == [], f"corrupt or partial files under final names: {watch.bad}"
    assert statuses == {"resolve": 0, "skip": 0, "route": 0, "fetch": 1, "append": 0}, \
        (statuses, pipeline.stderr())
    assert_no_traceback(pipeline)

    requests = emu.stats()["requests"]
    hit = {r["fault"].split(":")[0] for r in requests if r["fault"]}
    assert {"503", "429", "reset", "corrupt", "close", "stall", "hang"} <= hit, hit

    events = log_events(log)
    outcomes = {e["id"]: e for e in events if e["event"] in ("completed", "failed")}
    stderr = pipeline.stderr("fetch")["fetch"]
    on_disk = tree(disks)
    for item in catalog.sorted_items():
        identifier, event = item.identifier, outcomes[item.identifier]
        if identifier in DOOMED:
            assert event["event"] == "failed", event
        if event["event"] == "completed":
            assert all(on_disk.get(n) == m for n, m in expected.items()
                       if n.startswith(identifier + "/")), identifier
            continue
        # Failed: truthfully, naming a fault that hit this item's requests.
        # (a stall is logged only once its silence is over: after the run)
        seen = {r["fault"].split(":")[0] for r in requests
                if r["fault"] and identifier in r["path"]}
        if identifier in DOOMED:
            seen.add(DOOMED[identifier][1].split(":")[0])
        assert any(re.search(SAYS[kind], event["error"], re.IGNORECASE) for kind in seen), \
            (identifier, event["error"], seen)
        assert event["retryable"] is True and event["attempts"] >= RETRIES + 1, event
        assert f"{identifier}: " in stderr  # the error is told to the human too
        if "http_status" in event:
            assert str(event["http_status"]) in seen
        assert not any(n.startswith(identifier + "/") and expected[n] != md5
                       for n, md5 in on_disk.items())
    assert locks(disks) == []
    state = assert_status_matches_log(log, env)
    assert set(DOOMED) <= {k for k, s in state.items() if s == "failed"}
    assert sum(s == "completed" for s in state.values()) >= 5, "too few items got through"

    # Without the random faults a re-run completes all but the doomed items.
    emu.configure(status_rate=0, reset_rate=0, corrupt_rate=0, close_before_headers_rate=0)
    with FinalNameWatch(disks, expected) as watch:
        rerun = Pipeline(stages, env, tmp_path / "rerun")
        statuses = rerun.wait(timeout=120)
    assert watch.bad == []
    assert statuses["fetch"] == 1, (statuses, rerun.stderr())
    assert tree(disks) == {n: m for n, m in expected.items() if n.split("/")[0] not in DOOMED}
    state = assert_status_matches_log(log, env)
    assert sorted(k for k, s in state.items() if s == "failed") == sorted(DOOMED)

    # Checked last, so that a failure here does not hide the checks above.
    fetch_kinds = ("metadata", "redirect", "storage")
    for refused in (r for r in requests if r["fault"] and r["fault"][:3] in ("429", "503")
                    and ":" in r["fault"] and r["kind"] in fetch_kinds):
        pause = float(refused["fault"].split(":")[1])
        # A 429 holds back every request; a 503 holds back its own.
        same = (lambda r: True) if refused["fault"].startswith("429") else \
            (lambda r, name=refused["path"].rsplit("/", 1)[-1]: r["path"].endswith("/" + name))
        during = [r for r in requests if r["kind"] in fetch_kinds and same(r)
                  and refused["end"] + GRACE < r["start"] < refused["end"] + pause - GRACE]
        assert during == [], (f"{len(during)} requests during the Retry-After of "
                              f"{refused['path']}: {[r['path'] for r in during]}")
