"""ia-fetch makes the tree ``ia download`` makes, on items shaped like real
ones (tests/emulator/realistic.py): same paths, sizes, md5s and mtimes for
the same options.  Where ia is wrong ia-fetch differs on purpose, and the
test says how; ia-fetch(1) lists each place under "WHERE IA DOWNLOAD IS
WRONG".  Then the defects real metadata showed, each fixed."""

import email.utils
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.emulator import Catalog, Emulator
from tests.emulator.realistic import add_realism_items
from tests.helpers import base_env, command, jsonl_bytes, parse_jsonl, run

IA = str(Path(sys.executable).parent / "ia")
VIDEO, FILM, BOOK = "parity-0001", "parity-0003", "parity-0005"
ODD, PRIVATE, REAL_BOOK = "real-odd", "real-private", "real-book"
#: The items whose every file downloads (real-private has a file gone).
HEALTHY = (VIDEO, FILM, BOOK, ODD)


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    """One emulator for the module: the realistic mix (a video item, a
    film, a book) and the realism items; ``env`` has the uploader's keys,
    ``anonymous`` none."""
    catalog = Catalog.generate(items=5, files_per_item=1, file_size=20_000, mix="realistic",
                               collection="parity")
    add_realism_items(catalog)
    catalog.add_special_items()
    with Emulator(catalog) as emulator:
        emulator.env = base_env(**emulator.client_env(tmp_path_factory.mktemp("keys")))
        emulator.anonymous = base_env(**emulator.client_env(
            tmp_path_factory.mktemp("anonymous"), credentials=False))
        yield emulator


def tree(root, with_mtimes=True):
    """{relative path: (size, md5[, mtime])} of the files below ``root``."""
    root = Path(root)
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            entry = (len(data), hashlib.md5(data).hexdigest())
            found[str(path.relative_to(root))] = entry + ((int(path.stat().st_mtime),)
                                                          if with_mtimes else ())
    return found


def ia_download(env, dest, items, args):
    """``ia download`` of ``items`` (one run, through an item list)."""
    dest.mkdir()
    itemlist = dest.parent / f"{dest.name}.items"
    itemlist.write_text("".join(f"{i}\n" for i in items))
    result = run([IA, "--insecure", "download", "--itemlist", str(itemlist),
                  "--destdir", str(dest), *args], env=env)
    return result


def ia_fetch(env, dest, items, args):
    dest.mkdir()
    result = run([command("ia-fetch"), "-d", str(dest), *args],
                 input=jsonl_bytes({"id": i} for i in items), env=env)
    return result, parse_jsonl(result.stdout)


def both(emu, tmp_path, items, *args, with_mtimes=True):
    """(ia's tree, ia-fetch's tree), both runs having succeeded."""
    theirs = ia_download(emu.env, tmp_path / "ia", items, args)
    assert theirs.returncode == 0, theirs.stderr.decode()[-2000:]
    ours, _ = ia_fetch(emu.env, tmp_path / "ours", items, args)
    assert ours.returncode == 0, ours.stderr.decode()
    return (tree(tmp_path / "ia", with_mtimes), tree(tmp_path / "ours", with_mtimes))


SAME_TREE = {
    "default": (HEALTHY, []),
    "glob with |": (HEALTHY, ["--glob", "*.jpg|*.xml"]),
    "glob into subdirectories": ((ODD, FILM), ["--glob", "sub/*", "--glob", "*.thumbs/*"]),
    "glob and exclude": (HEALTHY, ["--glob", "*", "--exclude", "*.xml", "--exclude", "*#*"]),
    "format": ((FILM,), ["--format", "Thumbnail"]),
    "formats repeated": ((BOOK, FILM), ["--format", "Text PDF", "--format", "DjVuTXT",
                                        "--format", "h.264"]),
    "source": (HEALTHY, ["--source", "original"]),
    "sources repeated": (HEALTHY, ["--source", "metadata", "--source", "derivative"]),
    "exclude-source": (HEALTHY, ["--exclude-source", "derivative"]),
    "download-history": ((ODD,), ["--download-history"]),
    "no-directories": ((ODD,), ["--no-directories"]),
    "glob and format (the glob decides)": ((ODD, BOOK), ["--glob", "*.txt", "--format",
                                                           "MPEG2"]),
    "format and source": ((FILM, BOOK), ["--format", "Metadata", "--source", "original"]),
    "glob and exclude-source": (HEALTHY, ["--glob", "*.jpg|*.gif", "--exclude-source",
                                          "original"]),
    "glob, format and source": ((FILM, BOOK), ["--glob", "*.xml", "--format", "JPEG",
                                                "--source", "original"]),
}


@pytest.mark.parametrize("case", list(SAME_TREE))
def test_same_tree_as_ia_download(emu, tmp_path, case):
    items, args = SAME_TREE[case]
    theirs, ours = both(emu, tmp_path, items, *args)
    assert ours == theirs
    assert ours, "the case selects something"


def test_no_change_timestamp_leaves_download_times(emu, tmp_path):
    started = time.time() - 1
    theirs, ours = both(emu, tmp_path, (ODD, FILM), "--no-change-timestamp", with_mtimes=False)
    assert ours == theirs
    assert all(os.stat(p).st_mtime >= started for p in (tmp_path / "ours").rglob("*")
               if p.is_file())


def test_on_the_fly_fetches_what_ia_does_and_dates_it_truthfully(emu, tmp_path):
    """ia stamps a file 1970-01-01 when it has neither an mtime in the
    metadata nor a Last-Modified (on-the-fly derivatives have neither);
    ia-fetch leaves the download time."""
    started = time.time() - 1
    theirs, ours = both(emu, tmp_path, (REAL_BOOK,), "--on-the-fly")
    made = {f"{REAL_BOOK}/{REAL_BOOK}{suffix}"
            for suffix in (".epub", ".mobi", "_daisy.zip", "_archive_marc.xml")}
    assert made <= set(ours)
    assert {p: e[:2] for p, e in ours.items()} == {p: e[:2] for p, e in theirs.items()}
    assert {p: e for p, e in ours.items() if p not in made} == {
        p: e for p, e in theirs.items() if p not in made}
    assert all(theirs[p][2] == 0 for p in made)  # 1970
    assert all(ours[p][2] >= started for p in made)


def test_the_keys_go_to_archive_org_hosts_only(emu, tmp_path):
    """ia keeps the S3 keys on a redirect to any host whose name ends in
    archive.org; ia-fetch sends them to archive.org and its subdomains."""

    def keys_sent_to_storage():
        storage = [r for r in emu.stats()["requests"] if r["kind"] == "storage"]
        emu.reset_stats()
        assert storage and all(r["host"].endswith(".notarchive.org") for r in storage)
        return {r["auth"] for r in storage}

    emu.reset_stats()
    theirs = ia_download(emu.env, tmp_path / "ia", ["real-elsewhere"], [])
    assert theirs.returncode == 0, theirs.stderr.decode()[-2000:]
    assert keys_sent_to_storage() == {True}
    ours, _ = ia_fetch(emu.env, tmp_path / "ours", ["real-elsewhere"], [])
    assert ours.returncode == 0, ours.stderr.decode()
    assert keys_sent_to_storage() == {False}
    assert tree(tmp_path / "ours") == tree(tmp_path / "ia")


def test_a_refusal_is_not_retried(emu, tmp_path):
    """ia retries an HTTP 403 as if it might pass (--retries times, 3 s
    apart); ia-fetch asks once."""

    def asked():
        paths = [r["path"] for r in emu.stats()["requests"] if r["kind"] == "redirect"]
        emu.reset_stats()
        return paths.count(f"/download/{PRIVATE}/secret.pdf")

    emu.reset_stats()
    ia_download(emu.anonymous, tmp_path / "ia", [PRIVATE], ["--glob", "secret.pdf", "-R", "1"])
    assert asked() == 2
    ia_fetch(emu.anonymous, tmp_path / "ours", [PRIVATE], ["--glob", "secret.pdf",
                                                            "--retries", "1"])
    assert asked() == 1


def test_exclude_without_glob_narrows_format_where_ia_ignores_it(emu, tmp_path):
    """ia applies --exclude only with --glob (its help says so); ia-fetch
    applies it to the --format selection and to the whole item too."""
    theirs, ours = both(emu, tmp_path, (FILM,), "--format", "Thumbnail", "--exclude", "*_000001*")
    thumbs = {p for p in theirs if ".thumbs/" in p}
    assert len(thumbs) == 5 and set(theirs) == thumbs
    assert set(ours) == {p for p in thumbs if "_000001" not in p}


def test_listed_file_without_size_is_fetched_and_planned_as_unknown(emu, tmp_path):
    """The library reads a missing size as 0: ia-fetch failed every
    on-the-fly derivative with a size mismatch and planned it as 0 bytes."""
    result, events = ia_fetch(emu.env, tmp_path / "ours", [REAL_BOOK],
                              ["--on-the-fly", "--format", "EPUB", "--format", "MOBI"])
    assert result.returncode == 0, result.stderr.decode()
    assert events[-1]["event"] == "completed" and events[-1]["files"] == 2
    result, events = ia_fetch(emu.env, tmp_path / "plan", [ODD, REAL_BOOK],
                              ["--dry-run", "--on-the-fly", "--glob",
                               f"{REAL_BOOK}.epub|no size.bin|empty.dat"])
    planned = {e["id"]: e for e in events}
    assert planned[REAL_BOOK]["plan"] == [{"name": f"{REAL_BOOK}.epub", "size": None}]
    assert planned[REAL_BOOK]["files_unknown_size"] == 1 and planned[REAL_BOOK]["bytes"] == 0
    assert planned[ODD]["plan"] == [{"name": "empty.dat", "size": 0},
                                    {"name": "no size.bin", "size": None}]


def test_raw_utf8_location_is_followed(emu, tmp_path):
    name = "sub/Ünïcödé ファイル.txt"
    # Not on the node the metadata names first: ia-fetch falls back to
    # /download/, whose redirect names another node in raw UTF-8.
    emu.inject(f"*/items/{ODD}/*", ["404"])
    try:
        result = run([command("ia-fetch"), "-d", str(tmp_path)], env=emu.env,
                     input=jsonl_bytes([{"id": ODD, "file": name}]))
    finally:
        emu.clear_injections()
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / ODD / name).read_bytes() == emu.catalog.file_bytes(ODD, name)
    served = [r for r in emu.stats()["requests"] if r["kind"] == "storage"
              and r["path"].endswith("ファイル.txt") and r["status"] == 200]
    assert [r["host"] for r in served] == [emu.catalog.items[ODD].servers[1]]


def test_stale_torrent_md5_is_not_trusted(emu, tmp_path):
    torrent = f"{FILM}_archive.torrent"
    listed = next(f for f in emu.catalog.items[FILM].files.values() if f.name == torrent)
    assert listed.listed_digests()["md5"] != listed.md5()
    result = run([command("ia-fetch"), "-d", str(tmp_path)], env=emu.env,
                 input=jsonl_bytes([{"id": FILM, "file": torrent}]))
    assert result.returncode == 0, result.stderr.decode()
    assert parse_jsonl(result.stdout)[-1]["attempts"] == 2  # metadata, and the file once


def test_every_failed_file_is_named_and_the_rest_fetched(emu, tmp_path):
    result, events = ia_fetch(emu.anonymous, tmp_path / "ours", [PRIVATE], [])
    assert result.returncode == 1
    failed = events[-1]
    assert failed["event"] == "failed" and failed["files"] == 2
    assert sorted(tree(tmp_path / "ours")) == [f"{PRIVATE}/also public.txt",
                                               f"{PRIVATE}/public.txt"]
    by_name = {f["name"]: f for f in failed["failed_files"]}
    assert set(by_name) == {"secret.pdf", "lost.bin"}
    assert by_name["secret.pdf"]["http_status"] == 403
    assert "private file" in by_name["secret.pdf"]["error"]
    assert by_name["lost.bin"]["http_status"] == 404
    assert not any(f["retryable"] for f in failed["failed_files"]) and not failed["retryable"]
    stderr = result.stderr.decode()
    assert "secret.pdf" in stderr and "lost.bin" in stderr and "private file" in stderr


def test_a_job_with_a_permanent_failure_is_permanent_each_file_says_its_own(emu, tmp_path):
    emu.inject(f"re:/{PRIVATE}/public.txt$", ["503"])  # on its node or at /download/
    try:
        result, events = ia_fetch(emu.anonymous, tmp_path / "ours", [PRIVATE],
                                  ["--retries", "0"])
    finally:
        emu.clear_injections()
    failed = events[-1]
    retryable = {f["name"]: f["retryable"] for f in failed["failed_files"]}
    assert retryable == {"public.txt": True, "secret.pdf": False, "lost.bin": False}
    assert failed["retryable"] is False and failed["failed_file"] in ("secret.pdf", "lost.bin")
    assert "public.txt: HTTP 503" in failed["error"]


def test_a_restricted_item_and_a_dark_item_say_so(emu, tmp_path):
    result, events = ia_fetch(emu.anonymous, tmp_path / "ours",
                              ["special-restricted", "special-dark"], [])
    assert result.returncode == 1
    failed = {e["id"]: e for e in events if e["event"] == "failed"}
    restricted = failed["special-restricted"]
    assert restricted["error"].startswith("all 2 files: access denied (HTTP 403): the item "
                                          "is access-restricted")
    assert len(restricted["failed_files"]) == 2
    assert "is dark" in failed["special-dark"]["error"]
    assert "failed_files" not in failed["special-dark"]


def test_one_unsafe_name_fails_only_itself(emu, tmp_path):
    result, events = ia_fetch(emu.env, tmp_path / "ours", ["special-unsafe-names"], [])
    assert result.returncode == 1
    failed = events[-1]
    errors = {f["name"]: f["error"] for f in failed["failed_files"]}
    refused = {name for name, error in errors.items() if "unsafe file name" in error}
    assert refused == {"../evil.txt", "a/../../b", "dir\\..\\..\\evil.txt"}
    # As the library (so ia) does, a leading / is dropped: "/etc/passwd" is
    # asked for as etc/passwd, which is not there.
    assert errors["etc/passwd"] == "not found (HTTP 404)"
    assert sorted(tree(tmp_path / "ours")) == ["special-unsafe-names/ok.txt"]
    assert "../evil.txt" in result.stderr.decode()


def test_an_identifier_the_search_lists_twice_is_fetched_right(emu, tmp_path):
    emu.catalog.repeated_in_search = FILM
    try:
        dest = tmp_path / "dest"
        dest.mkdir()
        pipeline = f"ia-resolve --search collection:parity | ia-fetch -j 4 -d {dest}"
        result = subprocess.run(["bash", "-c", pipeline], env=emu.env, capture_output=True,
                                timeout=120)
    finally:
        emu.catalog.repeated_in_search = None
    assert result.returncode == 0, result.stderr.decode()
    events = parse_jsonl(result.stdout)
    assert {e["id"] for e in events if e["event"] == "completed"} == {
        f"parity-{n:04d}" for n in range(1, 6)}
    assert {p.split("/", 1)[0] for p in tree(dest)} == {f"parity-{n:04d}" for n in range(1, 6)}


def test_the_emulator_serves_what_real_metadata_holds(emu):
    """The shapes the tests above rely on, as a plain HTTP client sees them."""
    session = requests.Session()
    session.proxies = {"http": emu.url}

    def get(path, **kwargs):
        return session.get(f"http://archive.org{path}", timeout=10, **kwargs)

    files = {f["name"]: f for f in get(f"/metadata/{ODD}").json()["files"]}
    assert files["empty.dat"]["size"] == "0" and files["empty.dat"]["mtime"].isdigit()
    assert "size" not in files["no size.bin"] and "md5" not in files["no md5.bin"]
    assert "mtime" not in files["no mtime.bin"]
    assert set(files[f"{ODD}_files.xml"]) == {"name", "source", "format"}
    assert {"café.txt", "cafe\u0301.txt", "Readme.txt", "README.txt"} <= set(files)
    assert max(len(n.encode()) for n in files) == 250
    skewed = get(f"/download/{ODD}/skewed.bin")
    listed = int(files["skewed.bin"]["mtime"])
    assert email.utils.parsedate_to_datetime(skewed.headers["Last-Modified"]).timestamp() == \
        listed + 3
    hop = get("/download/real-odd/" + requests.utils.quote("sub/Ünïcödé ファイル.txt"),
              allow_redirects=False)
    location = hop.headers["Location"].encode("latin-1")
    assert "Ünïcödé".encode() in location and emu.catalog.items[ODD].servers[1].encode() in location
    private = {f["name"]: f for f in get(f"/metadata/{PRIVATE}").json()["files"]}
    assert private["secret.pdf"]["private"] == "true"
    assert get(f"/download/{PRIVATE}/secret.pdf").status_code == 403
    assert get(f"/download/{PRIVATE}/lost.bin").status_code == 404
    epub = get(f"/download/{REAL_BOOK}/{REAL_BOOK}.epub")
    assert epub.status_code == 200 and "Last-Modified" not in epub.headers
    assert f"{REAL_BOOK}.epub" not in {f["name"] for f in
                                       get(f"/metadata/{REAL_BOOK}").json()["files"]}
