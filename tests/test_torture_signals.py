"""Torture: SIGINT and SIGTERM to the whole pipeline's process group, as a
terminal or a service manager sends them, mid-run; then a second SIGINT.
ia-fetch's output reaches ia-joblog append through this process (a relay
that no signal reaches), so what ia-fetch said is known exactly."""

import os
import signal
import subprocess
import time

import pytest

from tests.emulator import Catalog
from tests.helpers import command, parse_jsonl, start_group
from tests.torture import (STAGES, FinalNameWatch, Pipeline, assert_no_traceback,
                           assert_status_matches_log, file_key, full_pipeline, locks, log_events,
                           storage_requests, temporaries, tree, wait_for)
from tests.trees import catalog_md5s

INTERRUPTED = 130


def setup(make_emulator, tmp_path, items=16, timeout=30, **settings):
    catalog = Catalog.generate(items=items, files_per_item=2, file_size=128 * 1024)
    emu, env = make_emulator(catalog, **settings)
    disks = [tmp_path / "a", tmp_path / "b"]
    for disk in disks:
        disk.mkdir()
    log = tmp_path / "s.jsonl"
    stages = full_pipeline(log, disks, ["--search", "collection:demo"],
                           fetch_args=["-j", "4", "--timeout", str(timeout)])
    return catalog, emu, env, disks, log, stages


def relayed_events(pipeline):
    data = bytes(pipeline.relayed)
    assert not data or data.endswith(b"\n"), "ia-fetch wrote a torn last line"
    return parse_jsonl(data)


def assert_everything_fetch_said_is_logged(pipeline, log):
    said = relayed_events(pipeline)
    logged = log_events(log)
    missing = [e for e in said if e not in logged]
    assert missing == [], f"{len(missing)} events of ia-fetch never reached the log"
    return said


def rerun_completes(catalog, emu, env, disks, log, stages, workdir):
    """Re-run the same pipeline: it completes, fetching only what was missing."""
    complete = set(tree(disks))
    kept = temporaries(disks)
    emu.configure(bandwidth=0)
    emu.clear_injections()
    emu.reset_stats()
    rerun = Pipeline(stages, env, workdir)
    statuses = rerun.wait(timeout=60)
    assert statuses == dict.fromkeys(STAGES, 0), (statuses, rerun.stderr())
    assert tree(disks) == catalog_md5s(catalog)
    assert temporaries(disks) == {} and locks(disks) == []
    state = assert_status_matches_log(log, env)
    assert set(state.values()) == {"completed"} and len(state) == len(catalog.items)
    for request in storage_requests(emu):
        key = file_key(request)
        assert key not in complete, f"{key} was complete but fetched again"
        start = kept.get(key, 0)
        assert request["range"] == (f"bytes={start}-" if start else None), key


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_to_the_group_records_every_finished_job_and_resumes(
        make_emulator, tmp_path, signum):
    catalog, emu, env, disks, log, stages = setup(make_emulator, tmp_path, bandwidth=1 << 20)
    expected = catalog_md5s(catalog)
    with FinalNameWatch(disks, expected) as watch:
        pipeline = Pipeline(stages, env, tmp_path / "run1", relay_after="fetch")
        wait_for(lambda: b'"completed"' in pipeline.relayed, 30, "a first completed job")
        pipeline.signal_group(signum)
        statuses = pipeline.wait(timeout=30)
    assert watch.bad == []
    assert statuses["fetch"] == INTERRUPTED and statuses["append"] == INTERRUPTED, statuses
    assert all(statuses[s] in (0, INTERRUPTED) for s in ("resolve", "skip", "route")), statuses
    assert_no_traceback(pipeline)
    assert signal.Signals(signum).name in pipeline.stderr("fetch")["fetch"]
    said = assert_everything_fetch_said_is_logged(pipeline, log)
    outcomes = {e["id"]: e for e in said if e["event"] in ("completed", "failed")}
    assert 0 < sum(e["event"] == "completed" for e in outcomes.values()) < len(catalog.items)
    assert all(e["retryable"] for e in outcomes.values() if e["event"] == "failed")
    on_disk = tree(disks)
    for identifier, event in outcomes.items():
        if event["event"] == "completed":
            assert all(on_disk.get(n) == expected[n] for n in expected
                       if n.startswith(identifier + "/")), identifier
    assert_status_matches_log(log, env)
    rerun_completes(catalog, emu, env, disks, log, stages, tmp_path / "run2")


def test_a_second_sigint_ends_the_pipeline_within_a_second(make_emulator, tmp_path):
    catalog, emu, env, disks, log, stages = setup(make_emulator, tmp_path, bandwidth=1 << 20,
                                                  stall_seconds=60)
    # Later items' metadata and files go silent: a graceful stop has
    # something to wait for, which only the second SIGINT cuts short.
    for item in catalog.sorted_items()[4:]:
        emu.inject(f"/metadata/{item.identifier}", ["stall"])
        emu.inject(f"*/items/{item.identifier}/*", ["hang"])
    pipeline = Pipeline(stages, env, tmp_path / "run1", relay_after="fetch")
    wait_for(lambda: b'"completed"' in pipeline.relayed, 30, "a first completed job")
    time.sleep(0.3)  # into the silences
    pipeline.signal_group(signal.SIGINT)
    time.sleep(0.2)
    pipeline.signal_group(signal.SIGINT)
    second = time.monotonic()
    statuses = pipeline.wait(timeout=30)
    took = time.monotonic() - second
    assert took < 1.0, f"the pipeline took {took:.2f}s to end after the second SIGINT"
    assert statuses["fetch"] == INTERRUPTED and statuses["append"] == INTERRUPTED, statuses
    assert_no_traceback(pipeline)
    assert_everything_fetch_said_is_logged(pipeline, log)
    assert_status_matches_log(log, env)
    rerun_completes(catalog, emu, env, disks, log, stages, tmp_path / "run2")


def test_one_sigint_cuts_a_stalled_metadata_request(make_emulator, tmp_path):
    """The first SIGINT must not wait out --timeout on a silent metadata
    request (transfers are cut at once; see test_fetch)."""
    catalog, emu, env, disks, log, stages = setup(make_emulator, tmp_path, items=4,
                                                  timeout=8, stall_seconds=60)
    first, *others = catalog.sorted_items()
    for item in others:
        emu.inject(f"/metadata/{item.identifier}", ["stall"])
    pipeline = Pipeline(stages, env, tmp_path / "run1", relay_after="fetch")
    wait_for(lambda: b'"completed"' in pipeline.relayed, 30, "the first item")
    wait_for(lambda: sum(r["kind"] == "metadata" for r in emu.stats()["requests"]) >= 1, 10,
             "metadata requests")
    time.sleep(0.5)  # the other metadata requests are in their silence
    pipeline.signal_group(signal.SIGINT)
    sent = time.monotonic()
    statuses = pipeline.wait(timeout=40)
    took = time.monotonic() - sent
    assert statuses["fetch"] == INTERRUPTED, statuses
    assert took < 3, f"one SIGINT took {took:.1f}s: the stalled metadata read was waited out"
    said = assert_everything_fetch_said_is_logged(pipeline, log)
    failed = [e for e in said if e["event"] == "failed"]
    assert {e["id"] for e in failed} == {item.identifier for item in others}
    assert all(e["retryable"] for e in failed)


def test_a_dry_run_interrupted_tells_of_every_job_in_flight(make_emulator, tmp_path):
    """ia-fetch --dry-run takes no lock, yet Ctrl-C must still end each job
    whose planning was under way with an event (failed, retryable), as it
    does without --dry-run: a job that vanished without a word would be
    lost to the log that follows."""
    catalog = Catalog.generate(items=4, files_per_item=2, file_size=1024)
    emu, env = make_emulator(catalog, stall_seconds=60)
    for item in catalog.sorted_items():
        emu.inject(f"/metadata/{item.identifier}", ["stall"])
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(f'{{"id":"{item.identifier}"}}\n' for item in catalog.sorted_items()))
    process = start_group(f"{command('ia-fetch')} -n -j 4 --timeout 30 -d {tmp_path} < {jobs}",
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2)  # the four metadata requests are in their silence
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=20)
    assert process.returncode == INTERRUPTED, err
    events = parse_jsonl(out)
    assert sorted(e["id"] for e in events) == sorted(catalog.items), events
    assert all(e["event"] == "failed" and e["retryable"] for e in events), events
