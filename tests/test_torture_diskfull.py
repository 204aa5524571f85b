"""Torture: a destdir (a tmpfs) too small for an item.  The job fails with a
clear ENOSPC error, nothing partial sits under a final name, the other jobs
go on; routed over two disks, the retry completes on the other one."""

import shutil
import subprocess

import pytest

from tests.emulator import Catalog, FileSpec
from tests.helpers import command, jsonl_bytes, parse_jsonl, run
from tests.torture import (FinalNameWatch, Pipeline, assert_no_traceback,
                           assert_status_matches_log, final_files, locks, log_events, temporaries,
                           tmpfs, tree)
from tests.trees import catalog_md5s

SMALL_DISK = 384 * 1024
BIG_DISK = 4 << 20


def catalog_with_a_big_item():
    catalog = Catalog()
    small = [FileSpec("a.bin", 16 * 1024), FileSpec("b.bin", 16 * 1024)]
    catalog.add_item("small-1", small)
    # One part fits, both do not: the part kept still leaves room for small-2.
    catalog.add_item("big", [FileSpec(f"part{i}.bin", 256 * 1024) for i in range(2)])
    catalog.add_item("small-2", small)
    return catalog


@pytest.mark.parametrize("connections", [1, 2], ids=["j1", "j2"])
def test_a_disk_too_small_fails_the_item_with_enospc_and_the_rest_goes_on(
        make_emulator, tmp_path, connections):
    """With -j 2 a job that fits runs while "big" fills the disk: it must
    not fail for space that "big" gives back when it fails."""
    catalog = catalog_with_a_big_item()
    emu, env = make_emulator(catalog)
    expected = catalog_md5s(catalog)
    with tmpfs(tmp_path / "small", SMALL_DISK) as small, \
            FinalNameWatch([small], expected) as watch:
        jobs = [{"id": i} for i in ("small-1", "big", "small-2")]
        process = run([command("ia-fetch"), "-j", str(connections), "-d", str(small)],
                      input=jsonl_bytes(jobs), env=env)
        on_disk = tree([small])
        left = temporaries([small])
        lock_files = locks([small])
    assert process.returncode == 1, process.stderr
    stderr = process.stderr.decode()
    assert "Traceback" not in stderr
    outcomes = {e["id"]: e for e in parse_jsonl(process.stdout)
                if e["event"] in ("completed", "failed")}
    assert [outcomes[i]["event"] for i in ("small-1", "small-2")] == ["completed"] * 2, \
        [(e["id"], e.get("error")) for e in outcomes.values()]
    big = outcomes["big"]
    assert big["event"] == "failed" and "ENOSPC" in big["error"], big
    assert "No space left on device" in big["error"]
    assert big["failed_file"].startswith("part") and big["retryable"] is True
    assert "big: " in stderr and "ENOSPC" in stderr
    assert watch.bad == [], f"partial files under final names: {watch.bad}"
    small_items = {n: m for n, m in expected.items() if not n.startswith("big/")}
    assert {n: m for n, m in on_disk.items() if not n.startswith("big/")} == small_items
    assert all(expected[n] == m for n, m in on_disk.items())  # big's kept parts are whole
    assert left == {}, f"temporaries left to fill the disk: {left}"
    assert lock_files == []


def test_routed_over_two_disks_the_retry_completes_on_the_other_disk(make_emulator, tmp_path):
    catalog = catalog_with_a_big_item()
    emu, env = make_emulator(catalog)
    expected = catalog_md5s(catalog)
    log = tmp_path / "s.jsonl"
    with tmpfs(tmp_path / "small", SMALL_DISK) as small, \
            tmpfs(tmp_path / "large", BIG_DISK) as large, \
            FinalNameWatch([small, large], expected) as watch:
        # First everything goes to the small disk, where "big" cannot fit.
        # (With -j 2 big's parts go before small-2 starts: with more
        # workers small-2 may meet the full disk too, and fail, resumable.)
        first = subprocess.run(
            f"{command('ia-resolve')} small-1 big small-2 | {command('ia-joblog')} skip {log}"
            f" | {command('ia-fetch')} -q -j 2 -d {small} | {command('ia-joblog')} append {log}",
            shell=True, env=env, capture_output=True, timeout=120)
        assert first.returncode == 0, first.stderr  # ia-joblog append's status
        state = assert_status_matches_log(log, env)
        assert state == {"small-1": "completed", "big": "failed", "small-2": "completed"}
        # As ia-route(1) says: what the item left on the full disk is
        # removed (else ia-route sends it back there), and the failed job,
        # whose event names the full disk, is routed afresh with --force.
        shutil.rmtree(small / "big")
        retry = Pipeline([
            ("failed", [command("ia-joblog"), "failed", str(log)]),
            ("route", [command("ia-route"), "--force", "--margin", "16K", "--assume-size", "64K",
                       "-d", str(small), "-d", str(large)]),
            ("fetch", [command("ia-fetch"), "-q"]),
            ("append", [command("ia-joblog"), "append", str(log)]),
        ], env, tmp_path / "retry")
        statuses = retry.wait(timeout=120)
        disks = [small, large]
        where = final_files(disks)
        on_disk = tree(disks)
        left = temporaries(disks)
    assert statuses == {"failed": 0, "route": 0, "fetch": 0, "append": 0}, \
        (statuses, retry.stderr())
    assert_no_traceback(retry)
    assert watch.bad == []
    assert on_disk == expected and left == {}
    assert {where[n][0] for n in expected if n.startswith("big/")} == {str(large)}
    assert assert_status_matches_log(log, env) == dict.fromkeys(
        ("small-1", "big", "small-2"), "completed")
    retried = [e for e in log_events(log) if e["id"] == "big" and e["event"] == "completed"]
    assert retried[-1]["destdir"] == str(large)
