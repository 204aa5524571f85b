"""ia-fetch against the emulator, through real pipes and subprocesses."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.emulator import Catalog, FileSpec
from tests.helpers import command, jsonl_bytes, parse_jsonl, run, start_group
from tests.trees import catalog_md5s, mtimes, partial_files, tree_md5s

IA = str(Path(sys.executable).parent / "ia")


def fetch(env, jobs, *args, timeout=120):
    """Run ia-fetch on ``jobs`` (dicts); return (process, events)."""
    process = run([command("ia-fetch"), *args], input=jsonl_bytes(jobs), env=env,
                  timeout=timeout)
    return process, parse_jsonl(process.stdout)


def outcomes(events):
    return {e["id"] if "file" not in e else f"{e['id']}/{e['file']}": e
            for e in events if e["event"] in ("completed", "failed")}


def storage_requests(emu, since=0.0):
    return [r for r in emu.stats()["requests"] if r["kind"] == "storage" and r["start"] > since]


def test_tree_equals_ia_download_byte_for_byte_and_mtime_for_mtime(make_emulator, tmp_path):
    emu, env = make_emulator()
    ids = [item.identifier for item in emu.catalog.sorted_items()]
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir(), theirs.mkdir()
    pipeline = f"ia-resolve {' '.join(ids)} | ia-fetch -j 4 -d {ours}"
    process = subprocess.run(["bash", "-c", pipeline], env=env, capture_output=True, timeout=120)
    assert process.returncode == 0, process.stderr
    for identifier in ids:
        ia = run([IA, "--insecure", "download", identifier, "--destdir", str(theirs)], env=env)
        assert ia.returncode == 0, ia.stderr
    assert tree_md5s(ours) == tree_md5s(theirs)
    assert mtimes(ours) == mtimes(theirs)
    assert any("/" in name.split("/", 1)[1] for name in tree_md5s(ours))  # subdirectories
    assert any(not name.isascii() for name in tree_md5s(ours))  # Unicode names


def test_events_carry_the_job_and_a_rerun_downloads_nothing(emulator, tmp_path):
    emu, env = emulator
    ids = [item.identifier for item in emu.catalog.sorted_items()]
    jobs = [{"id": i, "batch": "b1"} for i in ids]
    process, events = fetch(env, jobs, "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    assert [e["event"] for e in events].count("started") == len(ids)
    done = outcomes(events)
    assert set(done) == set(ids)
    for identifier, event in done.items():
        assert event["event"] == "completed"
        assert event["batch"] == "b1" and event["destdir"] == str(tmp_path)
        item = emu.catalog.items[identifier]
        assert event["files"] == len(item.files) and event["bytes"] == item.item_size
        assert {"ts", "seconds", "attempts", "files_skipped"} <= set(event)
    assert tree_md5s(tmp_path) == catalog_md5s(emu.catalog)
    emu.reset_stats()
    process, events = fetch(env, jobs, "-d", str(tmp_path))
    assert process.returncode == 0
    # _files.xml, rewritten as its item changes, is judged by the server's date:
    # one HEAD per item, and no body at all
    assert sorted((r["method"], r["path"].rsplit("/", 1)[1]) for r in storage_requests(emu)) \
        == sorted(("HEAD", f"{i}_files.xml") for i in ids)
    assert all(e["files"] == 0 and e["files_skipped"] > 0 for e in outcomes(events).values())


def test_kill_9_mid_transfer_leaves_no_partial_final_file_and_resumes_by_range(make_emulator,
                                                                                tmp_path):
    catalog = Catalog()
    catalog.add_item("big", [FileSpec("movie.mp4", 6 << 20)])
    emu, env = make_emulator(catalog, bandwidth=2 << 20)
    fetcher = subprocess.Popen([command("ia-fetch"), "-d", str(tmp_path)], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    fetcher.stdin.write(b'{"id": "big"}\n')
    fetcher.stdin.flush()
    temp = tmp_path / "big" / ".movie.mp4.iatools-part"
    deadline = time.time() + 20
    while time.time() < deadline and (not temp.exists() or temp.stat().st_size < 2 << 20):
        time.sleep(0.05)
    fetcher.kill()
    fetcher.wait()
    assert not (tmp_path / "big" / "movie.mp4").exists()
    kept = temp.stat().st_size
    assert 0 < kept < 6 << 20
    since = time.time()
    emu.configure(bandwidth=0)
    process, events = fetch(env, [{"id": "big"}], "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    served = storage_requests(emu, since)
    assert [r["range"] for r in served] == [f"bytes={kept}-"]
    assert served[0]["bytes"] == (6 << 20) - kept
    assert tree_md5s(tmp_path) == catalog_md5s(emu.catalog)
    assert partial_files(tmp_path) == []


def test_faults_end_in_correct_files_or_truthful_failures(make_emulator, tmp_path):
    catalog = Catalog.generate(items=12, files_per_item=3, file_size=64 * 1024)
    emu, env = make_emulator(catalog, status_rate=0.1, status=503, retry_after=1,
                             reset_rate=0.1, corrupt_rate=0.1, fault_seed=11,
                             fault_kinds=("redirect", "storage"))
    emu.inject("/metadata/*", ["503", "close", "stall:1", "429:1"])
    jobs = [{"id": item.identifier} for item in catalog.sorted_items()]
    process, events = fetch(env, jobs, "-j", "4", "--retries", "10", "--timeout", "0.5",
                            "-d", str(tmp_path))
    faults = [r["fault"] for r in emu.stats()["requests"] if r["fault"]]
    assert {"reset", "corrupt"} <= {f.split(":")[0] for f in faults} and any("503" in f for f in faults)
    on_disk = tree_md5s(tmp_path)
    expected = catalog_md5s(catalog)
    for name, md5 in on_disk.items():
        assert expected[name] == md5, f"{name} is corrupt"
    assert process.returncode == 0, process.stderr
    assert on_disk == expected


def test_one_item_with_64_files_uses_all_connections(make_emulator, tmp_path):
    catalog = Catalog()
    catalog.add_item("wide", [FileSpec(f"part{i:02d}.bin", 256 * 1024) for i in range(64)])
    cap = 1 << 20
    emu, env = make_emulator(catalog, bandwidth=cap)
    process, _ = fetch(env, [{"id": "wide"}], "-j", "8", "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    stats = emu.stats()
    assert stats["peak_active_transfers"] == 8
    bodies = [r for r in stats["requests"] if r["kind"] == "storage"]
    span = max(r["end"] for r in bodies) - min(r["start"] for r in bodies)
    assert sum(r["bytes"] for r in bodies) / span > 0.8 * 8 * cap
    assert tree_md5s(tmp_path) == catalog_md5s(catalog)


def test_sigint_to_the_pipeline_records_every_completed_job(make_emulator, tmp_path):
    catalog = Catalog.generate(items=24, files_per_item=2, file_size=256 * 1024)
    emu, env = make_emulator(catalog, bandwidth=1 << 20)
    log, dest = tmp_path / "s.jsonl", tmp_path / "dest"
    dest.mkdir()
    pipeline = (f"ia-resolve --search collection:demo | ia-joblog skip {log} "
                f"| ia-fetch -j 4 -d {dest} | ia-joblog append {log}")
    group = start_group(pipeline, env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline and (not log.exists() or b'"completed"' not in log.read_bytes()):
        time.sleep(0.05)
    os.killpg(group.pid, signal.SIGINT)
    assert group.wait(timeout=20) == 130
    recorded = parse_jsonl(log.read_bytes())
    completed = {e["id"] for e in recorded if e["event"] == "completed"}
    assert 0 < len(completed) < 24
    expected = catalog_md5s(catalog)
    on_disk = tree_md5s(dest)
    for identifier in completed:
        names = [n for n in expected if n.startswith(identifier + "/")]
        assert all(on_disk.get(n) == expected[n] for n in names)
    interrupted = [e for e in recorded if e["event"] == "failed"]
    assert all(e["retryable"] for e in interrupted)
    for item in catalog.sorted_items():  # whole items on disk were all recorded
        names = [f"{item.identifier}/{n}" for n in item.files]
        if all(on_disk.get(n) == expected[n] for n in names):
            assert item.identifier in completed or item.identifier in {
                e["id"] for e in interrupted}
    partial = {str(p.parent / p.name[1:-len(".iatools-part")]): p.stat().st_size
               for p in partial_files(dest)}
    since = time.time()
    emu.configure(bandwidth=0)
    rerun = subprocess.run(["bash", "-c", pipeline], env=env, capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert tree_md5s(dest) == expected
    requested = [r["path"].split("/items/", 1)[1] for r in storage_requests(emu, since)]
    assert len(requested) == len(set(requested)), "a file was fetched twice in the re-run"
    for request in storage_requests(emu, since):
        name = request["path"].split("/items/", 1)[1]
        assert name not in on_disk, f"{name} was complete but fetched again"
        kept = partial.get(str(dest / name), 0)
        assert request["range"] == (f"bytes={kept}-" if kept else None)


def test_sigint_cuts_a_stalled_read_without_waiting_for_the_timeout(make_emulator, tmp_path):
    catalog = Catalog.generate(items=1, files_per_item=1, file_size=4 << 20)
    emu, env = make_emulator(catalog, stall_seconds=60)
    item = catalog.sorted_items()[0]
    emu.inject(f"*/items/{item.identifier}/*", ["hang"])
    fetch_process = start_group(f"ia-fetch -q --timeout 60 -d {tmp_path}", env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    fetch_process.stdin.write(jsonl_bytes([{"id": item.identifier}]))
    fetch_process.stdin.close()
    deadline = time.time() + 20
    while time.time() < deadline and not partial_files(tmp_path):
        time.sleep(0.05)
    assert partial_files(tmp_path), "the transfer never started"
    time.sleep(0.3)  # now in the silence
    os.killpg(fetch_process.pid, signal.SIGINT)
    sent = time.monotonic()
    assert fetch_process.wait(timeout=20) == 130
    assert time.monotonic() - sent < 3, "the stalled read was waited out"
    events = parse_jsonl(fetch_process.stdout.read())
    assert [(e["event"], e["retryable"]) for e in events if e["event"] == "failed"] == \
        [("failed", True)]
    assert partial_files(tmp_path)
    assert not any((tmp_path / item.identifier / name).exists() for name in item.files)


def test_permanent_failures_fail_at_once_with_a_reason(make_emulator, tmp_path):
    catalog = Catalog()
    catalog.add_special_items()
    emu, env = make_emulator(catalog, credentials=False)
    ids = ["special-missing", "special-dark", "special-restricted"]
    process, events = fetch(env, [{"id": i} for i in ids], "-d", str(tmp_path))
    assert process.returncode == 1
    done = outcomes(events)
    assert all(done[i]["event"] == "failed" and done[i]["retryable"] is False for i in ids)
    assert "does not exist" in done["special-missing"]["error"]
    assert "dark" in done["special-dark"]["error"]
    assert done["special-restricted"]["http_status"] == 403
    assert "special-restricted" in process.stderr.decode()
    metadata = [r for r in emu.stats()["requests"] if r["kind"] == "metadata"]
    assert len(metadata) == 3  # never retried


def test_restricted_item_downloads_with_credentials_from_the_config(make_emulator, tmp_path):
    catalog = Catalog()
    catalog.add_special_items()
    emu, env = make_emulator(catalog)
    process, events = fetch(env, [{"id": "special-restricted"}], "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    assert outcomes(events)["special-restricted"]["event"] == "completed"


def test_unsafe_names_in_metadata_are_refused_and_nothing_escapes(make_emulator, tmp_path):
    catalog = Catalog()
    catalog.add_special_items()
    emu, env = make_emulator(catalog)
    dest = tmp_path / "dest"
    dest.mkdir()
    before = set(tmp_path.parent.rglob("*"))
    process, events = fetch(env, [{"id": "special-unsafe-names"}], "-d", str(dest))
    assert process.returncode == 1
    event = outcomes(events)["special-unsafe-names"]
    assert event["event"] == "failed" and "unsafe file name" in event["error"]
    assert (dest / "special-unsafe-names" / "ok.txt").exists()
    after = set(tmp_path.parent.rglob("*"))
    assert {p for p in after - before if dest not in p.parents and p != dest} == set()


def test_symlink_leading_out_of_destdir_is_refused(emulator, tmp_path):
    emu, env = emulator
    identifier = emu.catalog.sorted_items()[0].identifier
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir(), outside.mkdir()
    (dest / identifier).symlink_to(outside)
    process, events = fetch(env, [{"id": identifier}], "-d", str(dest))
    assert process.returncode == 1
    assert "symlink" in outcomes(events)[identifier]["error"]
    assert list(outside.iterdir()) == []


def test_bad_input_lines_are_reported_and_good_ones_flow(emulator, tmp_path):
    emu, env = emulator
    good = emu.catalog.sorted_items()[0].identifier
    lines = [b"not json", b"[1, 2]", b'{"file": "x"}', b'{"id": "a/b"}',
             b'{"id": "%s", "file": "../../etc/passwd"}' % good.encode(),
             b'{"id": "%s", "size": -5}' % good.encode(), b"", b"# comment",
             b'{"id": "%s"}\r' % good.encode()]
    process = run([command("ia-fetch"), "-d", str(tmp_path)], input=b"\n".join(lines) + b"\n",
                  env=env)
    assert process.returncode == 1
    stderr = process.stderr.decode()
    for line_number in (1, 2, 3, 4, 5, 6):
        assert f"line {line_number}:" in stderr
    assert "Traceback" not in stderr
    events = parse_jsonl(process.stdout)
    assert [e["event"] for e in events if e["event"] != "started"].count("failed") == 2
    assert any(e["event"] == "completed" and e["id"] == good for e in events)


def test_a_whole_temporary_left_before_the_rename_is_checked_and_installed(make_emulator,
                                                                            tmp_path):
    """A crash between the last byte and the rename leaves a whole
    temporary: its md5 decides, with no request (a Range past the end would
    only be refused); a temporary of the right size but wrong bytes is
    fetched again."""
    catalog = Catalog()
    catalog.add_item("item", [FileSpec("whole.bin", 300_000), FileSpec("wrong.bin", 300_000)])
    emu, env = make_emulator(catalog)
    files = catalog.items["item"].files
    (tmp_path / "item").mkdir()
    (tmp_path / "item" / ".whole.bin.iatools-part").write_bytes(files["whole.bin"].content.read())
    (tmp_path / "item" / ".wrong.bin.iatools-part").write_bytes(b"x" * 300_000)
    process, events = fetch(env, [{"id": "item"}], "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    assert [r["path"].rsplit("/", 1)[1] for r in storage_requests(emu)] == ["wrong.bin"]
    assert tree_md5s(tmp_path) == catalog_md5s(catalog)
    assert partial_files(tmp_path) == []
    assert os.stat(tmp_path / "item" / "whole.bin").st_mtime == files["whole.bin"].mtime


def test_file_level_job_fetches_one_file(emulator, tmp_path):
    emu, env = emulator
    item = emu.catalog.sorted_items()[0]
    name = next(n for n in item.files if "/" in n)
    process, events = fetch(env, [{"id": item.identifier, "file": name}], "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    assert tree_md5s(tmp_path) == {f"{item.identifier}/{name}": item.files[name].md5()}
    assert outcomes(events)[f"{item.identifier}/{name}"]["event"] == "completed"


def test_selection_filters_as_ia_download(emulator, tmp_path):
    emu, env = emulator
    item = emu.catalog.sorted_items()[0]
    job = [{"id": item.identifier}]

    def names(*args):
        dest = tmp_path / str(len(list(tmp_path.iterdir())))
        dest.mkdir()
        process, _ = fetch(env, job, "-d", str(dest), *args)
        assert process.returncode == 0, process.stderr
        return {Path(p).name for p in tree_md5s(dest)}

    assert names("--glob", "*.mp4") == {n for n in item.files if n.endswith(".mp4")}
    assert names("--glob", "*.mp4|*.ogv", "--exclude", "*part*") == {
        n for n in item.files if n.endswith((".mp4", ".ogv")) and "part" not in n}
    originals = {Path(n).name for n, f in item.files.items() if f.source == "original"}
    assert names("--source", "original") == originals
    assert "_meta.xml" not in "".join(names("--exclude-source", "metadata"))
    thumbs = names("--format", "Thumbnail")
    assert thumbs == {Path(n).name for n, f in item.files.items() if f.format == "Thumbnail"}


def test_no_files_matching_completes_with_a_note(emulator, tmp_path):
    emu, env = emulator
    identifier = emu.catalog.sorted_items()[0].identifier
    process, events = fetch(env, [{"id": identifier}], "-d", str(tmp_path), "--glob", "*.none")
    assert process.returncode == 0, process.stderr
    event = outcomes(events)[identifier]
    assert event["event"] == "completed" and event["files"] == 0
    assert event["reason"] == "no files match the filters"
    assert list(tmp_path.iterdir()) == []


def test_no_directories_ignore_existing_checksum_and_timestamps(emulator, tmp_path):
    emu, env = emulator
    item = emu.catalog.sorted_items()[0]
    name = next(n for n in item.files if n.endswith(".mp4"))
    job = [{"id": item.identifier, "file": name}]
    flat = tmp_path / "flat"
    flat.mkdir()
    assert fetch(env, job, "-d", str(flat), "--no-directories")[0].returncode == 0
    assert (flat / name).exists()
    target = tmp_path / item.identifier / name
    target.parent.mkdir(parents=True)
    target.write_bytes(b"local edit")
    assert fetch(env, job, "-d", str(tmp_path), "--ignore-existing")[0].returncode == 0
    assert target.read_bytes() == b"local edit"
    assert fetch(env, job, "-d", str(tmp_path), "--checksum")[0].returncode == 0
    assert target.read_bytes() == item.files[name].content.read()
    emu.reset_stats()
    assert fetch(env, job, "-d", str(tmp_path), "--checksum")[0].returncode == 0
    assert storage_requests(emu) == []
    os.unlink(target)
    assert fetch(env, job, "-d", str(tmp_path), "--no-change-timestamp")[0].returncode == 0
    assert abs(target.stat().st_mtime - time.time()) < 60


def test_dry_run_plans_and_touches_nothing(emulator, tmp_path):
    emu, env = emulator
    item = emu.catalog.sorted_items()[0]
    process, events = fetch(env, [{"id": item.identifier}], "-d", str(tmp_path), "--dry-run")
    assert process.returncode == 0, process.stderr
    (planned,) = events
    assert planned["event"] == "planned" and planned["files"] == len(item.files)
    assert planned["bytes"] == sum(f.size for f in item.files.values())
    assert list(tmp_path.iterdir()) == []
    assert storage_requests(emu) == []


def test_halt_now_stops_at_the_first_failure(make_emulator, tmp_path):
    catalog = Catalog.generate(items=30, files_per_item=1, file_size=1024)
    catalog.add_special_items()
    emu, env = make_emulator(catalog, latency=0.02)
    jobs = [{"id": "special-missing"}] + [{"id": i.identifier}
                                          for i in catalog.sorted_items() if i.identifier.startswith("demo")]
    process, events = fetch(env, jobs, "-j", "1", "-d", str(tmp_path), "--halt", "now,fail=1")
    assert process.returncode == 1
    assert len(outcomes(events)) < 5
    assert "--halt" in process.stderr.decode()


def test_a_dry_run_job_that_cannot_be_planned_fails_as_without_dry_run(make_emulator, tmp_path):
    """Its ``planned`` event has an error: it counts for the exit status, in
    --halt and on stderr as a failed job does."""
    catalog = Catalog.generate(items=30, files_per_item=1, file_size=1024)
    catalog.add_special_items()
    emu, env = make_emulator(catalog, latency=0.02)
    process, events = fetch(env, [{"id": "special-missing"}], "-d", str(tmp_path), "--dry-run")
    assert process.returncode == 1
    (planned,) = events
    assert planned["event"] == "planned" and planned["error"]
    assert process.stderr.decode() == f"ia-fetch: error: special-missing: {planned['error']}\n"
    jobs = [{"id": "special-missing"}] + [{"id": i.identifier} for i in catalog.sorted_items()
                                          if i.identifier.startswith("demo")]
    process, events = fetch(env, jobs, "-j", "1", "-d", str(tmp_path), "--dry-run",
                            "--halt", "now,fail=1")
    assert process.returncode == 1
    assert len(events) < 5
    assert "--halt now,fail=1 reached" in process.stderr.decode()


def test_usage_errors_and_warnings(emulator, tmp_path):
    emu, env = emulator
    process = run([command("ia-fetch"), "--stdout"], env=env)
    assert process.returncode == 2 and b"--stdout is not supported" in process.stderr
    process = run([command("ia-fetch"), "--halt", "sometimes"], env=env)
    assert process.returncode == 2 and b"--halt" in process.stderr
    process = run([command("ia-fetch"), "-j", "0"], env=env)
    assert process.returncode == 2
    process = run([command("ia-fetch"), "-j", "25", "-d", str(tmp_path)], env=env)
    assert process.returncode == 0 and b"archive.org asks" in process.stderr


def test_https_through_a_proxy_with_the_emulator_ca(make_emulator, tmp_path):
    emu, env = make_emulator(mode="https")
    ids = [item.identifier for item in emu.catalog.sorted_items()]
    process, events = fetch(env, [{"id": i} for i in ids], "-j", "4", "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    assert tree_md5s(tmp_path) == catalog_md5s(emu.catalog)
    assert emu.stats()["tunnels"] >= 1


def test_failed_event_fed_back_is_a_job(make_emulator, tmp_path):
    catalog = Catalog.generate(items=1, files_per_item=1, file_size=1024)
    emu, env = make_emulator(catalog)
    emu.inject(r"re:^/(download|\d+/items)/", ["404", "404"])  # the node, then /download/
    identifier = catalog.sorted_items()[0].identifier
    _, events = fetch(env, [{"id": identifier, "batch": "x"}], "-d", str(tmp_path))
    failed = outcomes(events)[identifier]
    assert failed["event"] == "failed" and failed["http_status"] == 404
    process, events = fetch(env, [failed])
    assert process.returncode == 0, process.stderr
    done = outcomes(events)[identifier]
    assert done["event"] == "completed" and done["batch"] == "x" and "error" not in done
    assert done["destdir"] == str(tmp_path)
