"""Keeping a mirror true over time (issue 17): files already on disk kept
without a body, items changed upstream fetched again in part only, local
damage found by ia-verify, files removed upstream, and the README's cron
line, all through real pipes against an emulator that changes between runs."""

import subprocess
import sys
from pathlib import Path

from tests.emulator import Catalog
from tests.emulator.changes import skew_last_modified
from tests.helpers import command, jsonl_bytes, parse_jsonl, run

IA = str(Path(sys.executable).parent / "ia")


def bodies(emu):
    """{ID/NAME: body bytes} the storage hosts sent since the last reset."""
    return {key: count for key, count in emu.stats(with_log=False)["bytes_by_file"].items()
            if count}


def head_requests(emu):
    """HEADs that reached a storage host (each after a redirect)."""
    return [r for r in emu.stats()["requests"] if r["method"] == "HEAD" and r["kind"] == "storage"]


def fetch(env, ids, *args):
    process = run([command("ia-fetch"), *args], input=jsonl_bytes({"id": i} for i in ids),
                  env=env)
    return process, parse_jsonl(process.stdout)


def file_count(catalog):
    return sum(len(item.files) for item in catalog.sorted_items())


def realistic_catalog():
    return Catalog.generate(items=3, files_per_item=1, file_size=20 * 1024, mix="realistic")


def test_a_tree_made_by_ia_download_is_adopted_without_a_body(make_emulator, tmp_path):
    emu, env = make_emulator(realistic_catalog())
    skew_last_modified(emu.catalog, 3)  # Last-Modified 3 s after the listed mtime
    ids = [item.identifier for item in emu.catalog.sorted_items()]
    for identifier in ids:
        ia = run([IA, "--insecure", "download", identifier, "--destdir", str(tmp_path)], env=env)
        assert ia.returncode == 0, ia.stderr
    emu.reset_stats()
    process, events = fetch(env, ids, "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    completed = [e for e in events if e["event"] == "completed"]
    assert sorted(e["id"] for e in completed) == ids
    assert all(e["files"] == 0 and e["bytes"] == 0 for e in completed)
    assert bodies(emu) == {}
    assert len(head_requests(emu)) <= file_count(emu.catalog)  # at most one per file


def test_a_rerun_where_last_modified_differs_from_the_mtime_sends_no_body(make_emulator,
                                                                          tmp_path):
    emu, env = make_emulator(realistic_catalog())
    skew_last_modified(emu.catalog, 2)
    ids = [item.identifier for item in emu.catalog.sorted_items()]
    assert fetch(env, ids, "-d", str(tmp_path))[0].returncode == 0
    for options in ([], ["--checksum"]):
        emu.reset_stats()
        process, events = fetch(env, ids, "-d", str(tmp_path), *options)
        assert process.returncode == 0, process.stderr
        assert bodies(emu) == {}, options
        assert all(e["files"] == 0 for e in events if e["event"] == "completed")
        assert len(head_requests(emu)) <= file_count(emu.catalog)


def test_checksum_asks_nothing_of_files_with_a_trustworthy_md5(make_emulator, tmp_path):
    emu, env = make_emulator(realistic_catalog())
    ids = [item.identifier for item in emu.catalog.sorted_items()]
    assert fetch(env, ids, "-d", str(tmp_path))[0].returncode == 0
    emu.reset_stats()
    process, _ = fetch(env, ids, "-d", str(tmp_path), "-C")
    assert process.returncode == 0, process.stderr
    # only _files.xml, whose listed md5 is always stale, needs the server's date
    assert sorted(r["path"].rsplit("/", 1)[1] for r in head_requests(emu)) \
        == sorted(f"{i}_files.xml" for i in ids)
    assert bodies(emu) == {}
