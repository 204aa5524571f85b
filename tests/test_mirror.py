"""Keeping a mirror true over time (issue 17): files already on disk kept
without a body, items changed upstream fetched again in part only, local
damage found by ia-verify, files removed upstream, and the README's cron
line, all through real pipes against an emulator that changes between runs."""

import contextlib
import email.utils
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tests.emulator import Catalog, FileSpec, changes
from tests.emulator.changes import skew_last_modified
from tests.helpers import REPO, command, jsonl_bytes, parse_jsonl, run
from tests.torture import tmpfs
from tests.trees import catalog_md5s, tree_md5s

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


def iso(timestamp):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


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


def test_resolve_gives_each_job_its_version_and_fetch_records_one(make_emulator, tmp_path):
    emu, env = make_emulator(realistic_catalog())
    changes.replace_file(emu.catalog, "demo-0002", "demo-0002_meta.xml", size=999)
    searched = parse_jsonl(run([command("ia-resolve"), "--search", "collection:demo"],
                               env=env).stdout)
    updated = {job["id"]: job["updated"] for job in searched}
    assert updated["demo-0002"] > updated["demo-0001"] == iso(emu.catalog.items["demo-0001"].updated)
    assert all(job["size"] == emu.catalog.items[job["id"]].item_size for job in searched)
    # plain ids carry no version: ia-fetch records the one the metadata states
    process, events = fetch(env, ["demo-0002"], "-d", str(tmp_path), "--glob", "*.xml")
    (completed,) = [e for e in events if e["event"] == "completed"]
    assert (completed["updated"], completed["size"]) \
        == (updated["demo-0002"], emu.catalog.items["demo-0002"].item_size)


def test_a_changed_item_transfers_only_its_new_and_changed_files(make_emulator, tmp_path):
    emu, env = make_emulator(realistic_catalog())
    ids = [item.identifier for item in emu.catalog.sorted_items()]
    assert fetch(env, ids, "-d", str(tmp_path))[0].returncode == 0
    item = emu.catalog.items["demo-0001"]
    same_size = "demo-0001_thumb.jpg"
    changes.replace_file(emu.catalog, "demo-0001", same_size)
    changes.replace_file(emu.catalog, "demo-0001", "demo-0001.ogv", size=1234)
    changes.add_file(emu.catalog, "demo-0001", FileSpec("added/new.txt", 4321))
    emu.reset_stats()
    process, events = fetch(env, ids, "-d", str(tmp_path))
    assert process.returncode == 0, process.stderr
    changed = {f"demo-0001/{name}" for name in
               (same_size, "demo-0001.ogv", "added/new.txt", "demo-0001_files.xml")}
    # _files.xml changes with its item (archive.org rewrites it); nothing else is sent
    assert bodies(emu) == {k: item.files[k.split("/", 1)[1]].size for k in changed}
    assert tree_md5s(tmp_path) == catalog_md5s(emu.catalog)


def test_files_removed_upstream_are_reported_and_kept_unless_delete(make_emulator, tmp_path):
    emu, env = make_emulator(realistic_catalog())
    assert fetch(env, ["demo-0001"], "-d", str(tmp_path))[0].returncode == 0
    item_dir = tmp_path / "demo-0001"
    changes.remove_file(emu.catalog, "demo-0001", "extras/notes — café ünï.txt")
    (item_dir / ".x.txt.iatools-part").write_bytes(b"a temporary")  # ours: never deleted
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("not in any item's directory")
    (item_dir / "link").symlink_to(outside)  # a symlink goes, never its target
    (item_dir / "demo-0001.epub").write_text("on the fly: made on request, never listed")
    removed = ["extras/notes — café ünï.txt", "link"]

    process, events = fetch(env, ["demo-0001"], "-d", str(tmp_path))
    (completed,) = [e for e in events if e["event"] == "completed"]
    assert completed["files_removed"] == removed and "files_deleted" not in completed
    assert (item_dir / "extras").is_dir()
    process, events = fetch(env, ["demo-0001"], "-d", str(tmp_path), "--delete", "--dry-run")
    assert events[0]["event"] == "planned" and events[0]["files_removed"] == removed
    assert (item_dir / "link").is_symlink()

    process, events = fetch(env, ["demo-0001"], "-d", str(tmp_path), "--delete")
    (completed,) = [e for e in events if e["event"] == "completed"]
    assert completed["files_deleted"] == removed, process.stderr
    assert not (item_dir / "extras").exists() and not (item_dir / "link").is_symlink()
    assert outside.exists() and (item_dir / ".x.txt.iatools-part").exists()
    assert set(tree_md5s(item_dir)) == set(emu.catalog.items["demo-0001"].files) \
        | {".x.txt.iatools-part", "demo-0001.epub"}
    usage = run([command("ia-fetch"), "--delete", "--no-directories"], env=env)
    assert usage.returncode == 2 and b"--delete" in usage.stderr


def verify(env, jobs, *args):
    process = run([command("ia-verify"), *args], input=jsonl_bytes(jobs), env=env)
    return process, {e["id"]: e for e in parse_jsonl(process.stdout)}


def test_verify_finds_missing_wrong_size_wrong_md5_and_extra_files(make_emulator, tmp_path):
    emu, env = make_emulator(realistic_catalog())
    ids = [item.identifier for item in emu.catalog.sorted_items()]
    assert fetch(env, ids, "-d", str(tmp_path))[0].returncode == 0
    process, events = verify(env, [{"id": i} for i in ids], "-d", str(tmp_path))
    assert process.returncode == 0 and process.stderr == b"", process.stderr
    assert {i: e["event"] for i, e in events.items()} == dict.fromkeys(ids, "verified")
    assert events["demo-0001"]["files"] == len(emu.catalog.items["demo-0001"].files)
    assert events["demo-0001"]["bytes"] == sum(f.stat().st_size for f in
                                               (tmp_path / "demo-0001").rglob("*") if f.is_file())

    item_dir = tmp_path / "demo-0002"
    (item_dir / "demo-0002.ogv").unlink()
    with open(item_dir / "demo-0002.mp4", "r+b") as f:  # one byte flipped, same size
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    with open(item_dir / "demo-0002_thumb.jpg", "ab") as f:
        f.write(b"x")
    (item_dir / "stray.txt").write_text("not listed")
    emu.reset_stats()
    jobs = [{"id": i, "destdir": str(tmp_path)} for i in ids] + [{"id": "no-such-item"}]
    process, events = verify(env, jobs)
    assert process.returncode == 1
    damaged = events["demo-0002"]
    assert damaged["event"] == "damaged"
    assert (damaged["files_missing"], damaged["files_wrong_size"], damaged["files_wrong_md5"],
            damaged["files_extra"]) \
        == (["demo-0002.ogv"], ["demo-0002_thumb.jpg"], ["demo-0002.mp4"], ["stray.txt"])
    assert events["demo-0001"]["event"] == "verified"
    # a job without a version gets the metadata's, as from ia-fetch
    assert (events["demo-0001"]["size"], events["demo-0001"]["updated"]) \
        == (emu.catalog.items["demo-0001"].item_size, iso(emu.catalog.items["demo-0001"].updated))
    assert events["no-such-item"]["event"] == "failed"
    assert events["no-such-item"]["retryable"] is False
    assert b"demo-0002: damaged" in process.stderr
    assert bodies(emu) == {} and emu.stats()["requests_by_kind"].get("storage", 0) == 0


# -- the README's cron line ------------------------------------------------------------

def readme_cron_line(tmp_path, disks, collection="demo"):
    """The README's hourly cron command, with this test's paths put in."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    (line,) = re.findall(r"^0 \* \* \* \* +(.+)$", readme, re.MULTILINE)
    assert "bash -o pipefail -c" in line and "ia-route --no-wait" in line
    for old, new in (("/var/lock/prelinger.lock", tmp_path / "lock"),
                     ("collection:prelinger", f"collection:{collection}"),
                     ("/data/s.jsonl", tmp_path / "s.jsonl"),
                     ("/mnt/a", disks[0]), ("/mnt/b", disks[1])):
        assert old in line
        line = line.replace(old, shlex.quote(str(new)))
    return line


def cron(line, env, timeout=120):
    """Run ``line`` as cron does: by /bin/sh."""
    return subprocess.run(["/bin/sh", "-c", line], env=env, capture_output=True,
                          timeout=timeout)


@contextlib.contextmanager
def two_disks(tmp_path, size=2 << 30):
    """Two filesystems (tmpfs: memory only as written) above ia-route's 1 GiB
    margin, as the cron line's /mnt/a and /mnt/b."""
    with tmpfs(tmp_path / "a", size) as a, tmpfs(tmp_path / "b", size) as b:
        yield [a, b]


def test_the_cron_line_exits_non_zero_when_ia_fetch_fails_a_job(make_emulator, tmp_path):
    catalog = realistic_catalog()
    catalog.add_item("demo-dark", [FileSpec("a.txt", 100)], collection="demo", dark=True)
    emu, env = make_emulator(catalog)
    with two_disks(tmp_path) as disks:
        process = cron(readme_cron_line(tmp_path, disks), env)
    assert process.returncode == 1, process.stderr
    assert b"demo-dark" in process.stderr and process.stdout == b""


def test_the_cron_line_prints_nothing_when_nothing_happened(make_emulator, tmp_path):
    emu, env = make_emulator(realistic_catalog())
    with two_disks(tmp_path) as disks:
        line = readme_cron_line(tmp_path, disks)
        first = cron(line, env)
        assert (first.returncode, first.stdout, first.stderr) == (0, b"", b"")
        assert mirrored(disks) == catalog_md5s(emu.catalog)
        emu.reset_stats()
        again = cron(line, env)
    assert (again.returncode, again.stdout, again.stderr) == (0, b"", b"")
    assert bodies(emu) == {}


def test_the_cron_line_returns_when_no_disk_has_room(make_emulator, tmp_path):
    catalog = Catalog()
    # Sizes from the search only: no item's files are ever read.  The first
    # two are routed, one to each disk, and fail at once (their metadata is
    # gone); each disk's room beyond ia-route's 1 GiB margin is then
    # reserved for them, and the third would wait for them to be fetched.
    catalog.add_item("demo-a-gone", [FileSpec("a.bin", 400 << 20)], missing=True)
    catalog.add_item("demo-a2-gone", [FileSpec("a.bin", 400 << 20)], missing=True)
    catalog.add_item("demo-b-big", [FileSpec("b.bin", 400 << 20)])
    emu, env = make_emulator(catalog)
    with two_disks(tmp_path, (1 << 30) + (600 << 20)) as disks:
        started = time.monotonic()
        process = cron(readme_cron_line(tmp_path, disks), env, timeout=60)
        took = time.monotonic() - started
    # ia-route exited 3 (NO_SPACE), ia-fetch 1: pipefail gives the last
    assert process.returncode == 1, process.stderr
    assert b"no disk has room for demo-b-big" in process.stderr
    assert b"--no-wait" in process.stderr and took < 30  # ia-route waits 30 s otherwise
    assert emu.stats()["requests_by_kind"].get("storage", 0) == 0


def mirrored(disks):
    """{ID/NAME: md5} of the items on all disks."""
    tree = {}
    for disk in disks:
        tree.update(tree_md5s(disk))
    return tree


def on_disk(disks, name):
    (path,) = [disk / name for disk in disks if (disk / name).exists()]
    return path


def flip_a_byte(path, offset=100):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def test_the_mirror_lifecycle(make_emulator, tmp_path):
    """Run 1 mirrors; upstream changes; run 2 (the README's cron line)
    transfers exactly the new and changed files; ia-verify finds exactly a
    file deleted and a byte changed on disk, which run 3 repairs; the tree
    is then a fresh ia download of the new state plus the file removed
    upstream; run 4 transfers nothing, prints nothing and exits 0; and
    ia-fetch --delete makes it the fresh download exactly."""
    emu, env = make_emulator(realistic_catalog())
    catalog = emu.catalog
    skew_last_modified(catalog, 2)
    removed = "demo-0003/demo-0003_reviews.xml"
    removed_md5 = catalog.md5("demo-0003", removed.split("/", 1)[1])
    log = tmp_path / "s.jsonl"
    with two_disks(tmp_path) as disks:
        line = readme_cron_line(tmp_path, disks)
        first = cron(line, env)
        assert (first.returncode, first.stdout) == (0, b""), first.stderr
        assert mirrored(disks) == catalog_md5s(catalog)

        changes.add_file(catalog, "demo-0001", FileSpec("extras/added.txt", 3000))
        changes.replace_file(catalog, "demo-0002", "demo-0002_thumb.jpg")  # same size
        changes.replace_file(catalog, "demo-0002", "demo-0002.ogv", size=5555)
        changes.remove_file(catalog, "demo-0003", removed.split("/", 1)[1])
        changes.add_item(catalog, "demo-0004", [FileSpec("new.bin", 7000)])
        skew_last_modified(catalog, 2)
        sizes = {f"{i}/{n}": f.size for i, item in catalog.items.items()
                 for n, f in item.files.items()}
        new_or_changed = ["demo-0001/extras/added.txt", "demo-0001/demo-0001_files.xml",
                          "demo-0002/demo-0002_thumb.jpg", "demo-0002/demo-0002.ogv",
                          "demo-0002/demo-0002_files.xml", "demo-0003/demo-0003_files.xml",
                          "demo-0003/demo-0003_archive.torrent", "demo-0004/new.bin"]
        emu.reset_stats()
        second = cron(line, env)
        assert second.returncode == 0, second.stderr
        assert bodies(emu) == {name: sizes[name] for name in new_or_changed}

        on_disk(disks, "demo-0001/demo-0001_meta.xml").unlink()
        flip_a_byte(on_disk(disks, "demo-0003/demo-0003.mpeg"))
        audit = subprocess.run(
            ["bash", "-o", "pipefail", "-c",
             f"ia-joblog completed {log} | ia-verify -q -j 2 | ia-joblog append {log}"],
            env=env, capture_output=True, timeout=120)
        assert audit.returncode == 1, audit.stderr
        verdicts = {e["id"]: e for e in parse_jsonl(log.read_bytes())
                    if e["event"] in ("verified", "damaged")}
        assert {i: e["event"] for i, e in verdicts.items()} == {
            "demo-0001": "damaged", "demo-0002": "verified", "demo-0003": "damaged",
            "demo-0004": "verified"}
        found = {i: (e["files_missing"], e["files_wrong_size"], e["files_wrong_md5"])
                 for i, e in verdicts.items() if e["event"] == "damaged"}
        assert found == {"demo-0001": (["demo-0001_meta.xml"], [], []),
                         "demo-0003": ([], [], ["demo-0003.mpeg"])}

        emu.reset_stats()
        third = cron(line, env)
        assert third.returncode == 0, third.stderr
        repaired = ["demo-0001/demo-0001_meta.xml", "demo-0003/demo-0003.mpeg"]
        assert bodies(emu) == {name: sizes[name] for name in repaired}

        fresh = tmp_path / "fresh"
        fresh.mkdir()
        for identifier in sorted(catalog.items):
            ia = run([IA, "--insecure", "download", identifier, "--destdir", str(fresh)],
                     env=env)
            assert ia.returncode == 0, ia.stderr
        assert mirrored(disks) == {**tree_md5s(fresh), removed: removed_md5}

        emu.reset_stats()
        last = cron(line, env)
        assert (last.returncode, last.stdout, last.stderr) == (0, b"", b"")
        assert bodies(emu) == {}

        # --delete over the completed jobs: the tree becomes the fresh one exactly
        delete = subprocess.run(
            ["bash", "-o", "pipefail", "-c", f"ia-joblog completed {log} | ia-fetch -q --delete"],
            env=env, capture_output=True, timeout=120)
        assert delete.returncode == 0, delete.stderr
        assert mirrored(disks) == tree_md5s(fresh) and bodies(emu) == {}


def test_the_emulator_changes_items_and_answers_head_and_if_modified_since(make_emulator):
    import requests

    emu, _ = make_emulator(realistic_catalog())
    session = requests.Session()
    session.proxies = {"http": emu.url}
    download = "http://archive.org/download/demo-0001/demo-0001.mp4"
    movie = emu.catalog.items["demo-0001"].files["demo-0001.mp4"]
    head = session.head(download, allow_redirects=True, timeout=5)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) == movie.size
    skew_last_modified(emu.catalog, 3)
    last_modified = session.head(download, allow_redirects=True, timeout=5).headers["Last-Modified"]
    assert last_modified == email.utils.formatdate(movie.mtime + 3, usegmt=True)
    not_modified = session.get(download, headers={"If-Modified-Since": last_modified}, timeout=5)
    assert not_modified.status_code == 304 and not_modified.content == b""
    older = email.utils.formatdate(movie.mtime, usegmt=True)
    assert session.get(download, headers={"If-Modified-Since": older}, timeout=5).status_code == 200

    before = session.get("http://archive.org/metadata/demo-0001", timeout=5).json()
    change = session.post(f"{emu.url}/_emu/change", timeout=5, json={
        "change": "add_file", "id": "demo-0001", "name": "new.txt", "size": 10})
    assert change.json() == {"ok": True}
    after = session.get("http://archive.org/metadata/demo-0001", timeout=5).json()
    assert after["item_size"] == before["item_size"] + 10
    assert after["item_last_updated"] > before["item_last_updated"]
    assert "new.txt" in {f["name"] for f in after["files"]}
    bad = session.post(f"{emu.url}/_emu/change", json={"change": "melt"}, timeout=5)
    assert bad.status_code == 400 and "unknown change" in bad.json()["error"]
