"""The archive.org emulator, checked with real clients only: requests and the
internetarchive library configured through the environment, the ``ia`` CLI,
and ``python -m tests.emulator serve``."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from tests.emulator import ACCESS_KEY, SECRET_KEY, Catalog, Emulator, FileSpec
from tests.emulator.catalog import ODD_NAMES, UNSAFE_NAMES
from tests.helpers import REPO, base_env

SCRAPE = "http://archive.org/services/search/v1/scrape"
BIG = "big-0001"
BIG_SIZE = 3 * (1 << 20) + 12345  # spans several tiles, ends mid-tile


def make_catalog():
    catalog = Catalog.generate(items=12, files_per_item=3, file_size=20_000)
    catalog.add_item(BIG, [FileSpec("big.bin", BIG_SIZE), FileSpec("small.txt", 10)],
                     collection="big")
    catalog.add_special_items()
    return catalog


CATALOG = make_catalog()


@pytest.fixture
def emu():
    with Emulator(CATALOG, scrape_min_count=1) as emulator:
        yield emulator


@pytest.fixture
def client(emu, tmp_path, monkeypatch):
    """``client(mode)``: a requests.Session that reaches ``emu`` only through
    the environment client_env returns (proxies, CA bundle)."""

    def make(mode="http"):
        workdir = tmp_path / mode
        workdir.mkdir(exist_ok=True)
        for name in ("all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        for name, value in emu.client_env(workdir, mode).items():
            monkeypatch.setenv(name, value)
        return requests.Session()

    return make


def url(scheme, path):
    return f"{scheme}://archive.org{path}"


def md5(data):
    return hashlib.md5(data).hexdigest()


def run_python(code, env, timeout=60):
    """Run ``code`` in a fresh interpreter: the library reads the environment
    and config when it starts, as it would for a user."""
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- both modes, plain requests -------------------------------------------

@pytest.mark.parametrize("scheme", ["http", "https"])
def test_metadata_and_download_through_the_proxy(client, emu, scheme):
    session = client(scheme)
    document = session.get(url(scheme, "/metadata/demo-0003"), timeout=5).json()
    assert document["metadata"]["identifier"] == "demo-0003"
    assert {"server", "d1", "d2", "dir", "workable_servers", "item_size", "files_count",
            "created", "uniq"} <= set(document)
    entry = document["files"][0]
    assert all(isinstance(entry[key], str) for key in ("size", "md5", "mtime", "crc32", "sha1"))

    name = entry["name"]
    response = session.get(url(scheme, f"/download/demo-0003/{name}"), timeout=5)
    assert response.status_code == 200
    assert response.history[0].status_code == 302
    assert response.url.startswith(f"{scheme}://{document['server']}{document['dir']}/")
    assert md5(response.content) == entry["md5"] == CATALOG.md5("demo-0003", name)
    assert response.headers["Last-Modified"] == time.strftime(
        "%a, %d %b %Y %H:%M:%S GMT", time.gmtime(int(entry["mtime"])))
    requests_seen = emu.stats()["requests"]
    assert {entry["tls"] for entry in requests_seen if entry["kind"] != "connect"} == {
        scheme == "https"}
    if scheme == "https":
        assert emu.stats()["tunnels"] >= 1


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_keep_alive_serves_many_requests_per_connection(client, emu, scheme):
    session = client(scheme)
    for number in range(1, 6):
        assert session.get(url(scheme, f"/metadata/demo-000{number}"), timeout=5).ok
    stats = emu.stats()
    assert stats["connections"] == 1
    assert stats["requests_by_kind"]["metadata"] == 5
    assert len({entry["conn"] for entry in stats["requests"]}) == 1


def test_unicode_and_odd_names_are_quoted_and_served(client):
    session = client("http")
    for name in ODD_NAMES:
        quoted = urllib.parse.quote(name)
        response = session.get(url("http", f"/download/special-odd-names/{quoted}"), timeout=5)
        assert md5(response.content) == CATALOG.md5("special-odd-names", name), name


def test_redirect_keeps_the_query_string(client, emu):
    session = client("http")
    response = session.get(url("http", "/download/demo-0001/demo-0001_01.bin?cnt=0"),
                           allow_redirects=False, timeout=5)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/items/demo-0001/demo-0001_01.bin?cnt=0")
    session.get(response.headers["Location"], timeout=5)
    assert emu.stats()["requests"][-1]["query"] == "cnt=0"


def test_unknown_files_and_items_are_404(client):
    session = client("http")
    assert session.get(url("http", "/download/demo-0001/nope.bin"), timeout=5).status_code == 404
    assert session.get(url("http", "/download/nope/x"), timeout=5).status_code == 404
    assert session.get(url("http", "/download/special-missing/a.txt"),
                       timeout=5).status_code == 404


def test_ranges(client):
    session = client("http")
    whole = CATALOG.file_bytes(BIG, "big.bin")
    assert len(whole) == BIG_SIZE
    target = session.get(url("http", f"/download/{BIG}/big.bin"), stream=True, timeout=5).url

    def get(headers):
        return session.get(target, headers=headers, timeout=5)

    part = get({"Range": "bytes=1048570-1048600"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 1048570-1048600/{BIG_SIZE}"
    assert part.content == whole[1048570:1048601]
    assert get({"Range": "bytes=3000000-"}).content == whole[3000000:]
    assert get({"Range": "bytes=-100"}).content == whole[-100:]
    unsatisfiable = get({"Range": f"bytes={BIG_SIZE}-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["Content-Range"] == f"bytes */{BIG_SIZE}"
    etag, modified = part.headers["ETag"], part.headers["Last-Modified"]
    assert get({"Range": "bytes=10-19", "If-Range": etag}).status_code == 206
    assert get({"Range": "bytes=10-19", "If-Range": modified}).status_code == 206
    stale = get({"Range": "bytes=10-19", "If-Range": '"other"'})
    assert stale.status_code == 200 and md5(stale.content) == CATALOG.md5(BIG, "big.bin")


def test_head_gives_the_length_without_a_body(client):
    session = client("http")
    response = session.head(url("http", f"/download/{BIG}/big.bin"), allow_redirects=True,
                            timeout=5)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == BIG_SIZE
    assert response.headers["Accept-Ranges"] == "bytes"


def test_files_xml_listed_md5_never_matches():
    realistic = Catalog.generate(items=1, mix="realistic")
    with Emulator(realistic) as other:
        session = requests.Session()
        session.proxies = {"http": other.url}
        document = session.get(url("http", "/metadata/demo-0001"), timeout=5).json()
        listed = {f["name"]: f["md5"] for f in document["files"]}
        served = session.get(url("http", "/download/demo-0001/demo-0001_files.xml"),
                             timeout=5).content
    assert md5(served) == realistic.md5("demo-0001", "demo-0001_files.xml")
    assert listed["demo-0001_files.xml"] != md5(served)
    assert listed["demo-0001.mp4"] == realistic.md5("demo-0001", "demo-0001.mp4")


def test_dark_missing_and_broken_metadata(client):
    session = client("http")
    assert session.get(url("http", "/metadata/special-dark"), timeout=5).json()["is_dark"]
    assert session.get(url("http", "/metadata/special-missing"), timeout=5).json() == {}
    assert session.get(url("http", "/metadata/no-such-item"), timeout=5).json() == {}
    broken = session.get(url("http", "/metadata/special-not-json"), timeout=5)
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()
    assert session.get(url("http", "/download/special-dark/a.txt"), timeout=5).status_code == 403
    names = [f["name"] for f in
             session.get(url("http", "/metadata/special-unsafe-names"), timeout=5).json()["files"]]
    assert set(UNSAFE_NAMES) < set(names)


def test_restricted_needs_the_s3_keys_on_both_hosts(client):
    session = client("http")
    path = url("http", "/download/special-restricted/a.txt")
    assert session.get(path, timeout=5).status_code == 403
    keys = {"Authorization": f"LOW {ACCESS_KEY}:{SECRET_KEY}"}
    redirect = session.get(path, headers=keys, allow_redirects=False, timeout=5)
    assert redirect.status_code == 302
    # Plain requests drops Authorization when redirected to another host.
    assert session.get(path, headers=keys, timeout=5).status_code == 403
    storage = session.get(redirect.headers["Location"], headers=keys, timeout=5)
    assert storage.status_code == 200
    assert session.get(redirect.headers["Location"], timeout=5).status_code == 403


# --- search ---------------------------------------------------------------

def test_scrape_pages_with_a_cursor(client):
    session = client("http")
    identifiers, cursor, pages = [], None, 0
    while True:
        params = {"q": "collection:demo", "fields": "identifier,item_size", "count": 5}
        if cursor:
            params["cursor"] = cursor
        page = session.post(SCRAPE, params=params, timeout=5).json()
        pages += 1
        assert page["total"] == 12 and page["count"] == len(page["items"])
        identifiers += [entry["identifier"] for entry in page["items"]]
        assert all(entry["item_size"] == 60_000 for entry in page["items"])
        cursor = page.get("cursor")
        if cursor is None:
            break
    assert pages == 3
    assert identifiers == sorted(identifiers) == [f"demo-{n:04d}" for n in range(1, 13)]


def test_scrape_query_language(client, emu):
    session = client("http")

    def search(query, **params):
        return session.get(SCRAPE, params={"q": query, **params}, timeout=5).json()

    assert search("*:*")["total"] == len(CATALOG.items)
    assert search('collection:"demo" AND identifier:demo-001*')["total"] == 3
    assert search("mediatype:data AND collection:special")["total"] == 6
    assert "error" in search("title:anything")
    assert "error" in search("collection:demo OR collection:big")
    assert "error" in search("*:*", cursor="not-a-cursor")
    emu.configure(scrape_min_count=100)
    assert search("collection:demo", count=5)["count"] == 12  # clamped up to 100


def test_library_reads_and_searches_through_the_env(emu, tmp_path):
    code = """if True:
        import json, internetarchive
        session = internetarchive.get_session()
        item = session.get_item("demo-0002")
        found = list(session.search_items("collection:demo", fields=["identifier", "item_size"],
                                          params={"count": 5}))
        restricted = session.get_item("special-restricted").get_file("a.txt")
        response = restricted.download(return_responses=True)
        print(json.dumps({"protocol": session.protocol, "files": len(item.item_metadata["files"]),
                          "found": [r["identifier"] for r in found],
                          "restricted_status": response.status_code,
                          "restricted_body": len(response.content)}))
    """
    result = run_python(code, base_env(**emu.client_env(tmp_path, "https")))
    assert result["protocol"] == "https:"
    assert result["files"] == 3
    assert result["found"] == [f"demo-{n:04d}" for n in range(1, 13)]
    assert result["restricted_status"] == 200 and result["restricted_body"] == 1000
    stats = emu.stats()
    # list() asks len(), which the library answers with a total_only request.
    scrapes = [entry["query"] for entry in stats["requests"] if entry["kind"] == "scrape"]
    assert len(scrapes) == 4 and sum("total_only=true" in query for query in scrapes) == 1
    assert all(entry["auth"] for entry in stats["requests"] if entry["kind"] == "storage")


def test_library_without_credentials_gets_403(emu, tmp_path):
    code = """if True:
        import json, internetarchive
        file = internetarchive.get_item("special-restricted").get_file("a.txt")
        # Not file.download(): it retries a 403 after 3 s sleeps, then raises.
        response = file.item.session.get(file.url, auth=file.auth, timeout=5)
        print(json.dumps({"auth": file.auth is not None, "status": response.status_code}))
    """
    result = run_python(code, base_env(**emu.client_env(tmp_path, "https", credentials=False)))
    assert result == {"auth": False, "status": 403}


def test_ia_cli_download_in_http_mode(emu, tmp_path):
    destination = tmp_path / "d"
    destination.mkdir()
    env = base_env(**emu.client_env(tmp_path, "http"))
    done = subprocess.run([str(REPO / ".venv/bin/ia"), "--insecure", "download", "demo-0004",
                           "--destdir", str(destination)], env=env, capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    for name, catalog_file in CATALOG.items["demo-0004"].files.items():
        path = destination / "demo-0004" / name
        assert md5(path.read_bytes()) == catalog_file.md5()
        assert path.stat().st_mtime == catalog_file.mtime


# --- faults ---------------------------------------------------------------

def test_scripted_status_faults_then_normal_service(client, emu):
    session = client("http")
    emu.inject("/metadata/demo-0001", ["503:2", "429"])
    first = session.get(url("http", "/metadata/demo-0001"), timeout=5)
    assert first.status_code == 503 and first.headers["Retry-After"] == "2"
    second = session.get(url("http", "/metadata/demo-0001"), timeout=5)
    assert second.status_code == 429 and "Retry-After" not in second.headers
    assert session.get(url("http", "/metadata/demo-0001"), timeout=5).ok
    assert [entry["fault"] for entry in emu.stats()["requests"]] == ["503:2", "429", None]


def test_reset_mid_body(client, emu):
    session = client("http")
    emu.inject(f"*/items/{BIG}/big.bin", ["reset"])
    with pytest.raises(requests.exceptions.RequestException):
        session.get(url("http", f"/download/{BIG}/big.bin"), timeout=5).content
    entry = emu.stats()["requests"][-1]
    assert entry["fault"] == "reset" and entry["bytes"] == BIG_SIZE // 2
    assert md5(session.get(url("http", f"/download/{BIG}/big.bin"), timeout=5).content) == \
        CATALOG.md5(BIG, "big.bin")


def test_corrupt_body_has_the_right_length(client, emu):
    session = client("http")
    emu.inject("re:/big.bin$", ["ok", "corrupt"])  # skips the redirect
    body = session.get(url("http", f"/download/{BIG}/big.bin"), timeout=5).content
    assert len(body) == BIG_SIZE and md5(body) != CATALOG.md5(BIG, "big.bin")


def test_close_before_headers(client, emu):
    session = client("http")
    emu.inject("/metadata/*", ["close"])
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(url("http", "/metadata/demo-0001"), timeout=5)
    assert emu.stats()["requests"][-1]["status"] is None


def test_stall_is_silence(client, emu):
    session = client("http")
    emu.inject("/metadata/*", ["stall:3", "stall:0.3"])
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(url("http", "/metadata/demo-0001"), timeout=0.3)
    started = time.monotonic()
    assert session.get(url("http", "/metadata/demo-0001"), timeout=5).ok
    assert time.monotonic() - started >= 0.3


def test_scrape_faults(client, emu):
    session = client("http")
    emu.inject("/services/search/v1/scrape", ["total_null", "error", "503"])
    params = {"q": "collection:demo", "count": 5}
    assert session.get(SCRAPE, params=params, timeout=5).json()["total"] is None
    assert "error" in session.get(SCRAPE, params=params, timeout=5).json()
    assert session.get(SCRAPE, params=params, timeout=5).status_code == 503
    assert session.get(SCRAPE, params=params, timeout=5).json()["total"] == 12


def test_random_faults_follow_rates_and_kinds(client, emu):
    session = client("http")
    emu.configure(status_rate=1.0, status=429, retry_after=1, fault_kinds="storage")
    response = session.get(url("http", "/download/demo-0001/demo-0001_01.bin"), timeout=5)
    assert response.status_code == 429 and response.history[0].status_code == 302
    assert session.get(url("http", "/metadata/demo-0001"), timeout=5).ok
    clean = session.get(url("http", "/metadata/demo-0001"), timeout=5).content
    emu.configure(status_rate=0.0, corrupt_rate=0.5, fault_kinds=["metadata"], fault_seed=7)
    bodies = [session.get(url("http", "/metadata/demo-0001"), timeout=5).content
              for _ in range(80)]
    assert all(len(body) == len(clean) for body in bodies)
    assert 20 < sum(body != clean for body in bodies) < 60


def test_bad_settings_are_refused(emu):
    for changes in ({"reset_rate": 2}, {"fault_kinds": "uploads"}, {"nonsense": 1}):
        with pytest.raises(ValueError):
            emu.configure(**changes)
    with pytest.raises(ValueError):
        emu.inject("*", ["explode"])


# --- latency, bandwidth, concurrency --------------------------------------

def test_latency_delays_each_response(client, emu):
    session = client("http")
    emu.configure(latency=0.2)
    started = time.monotonic()
    session.get(url("http", "/download/demo-0001/demo-0001_01.bin"), timeout=5)
    assert time.monotonic() - started >= 0.4  # redirect and storage: 2 responses


def test_bandwidth_is_per_connection_and_transfers_overlap(emu):
    emu.configure(bandwidth=4 << 20)
    sizes, workers = [], 4

    def download():
        session = requests.Session()
        session.proxies = {"http": emu.url}
        target = f"http://archive.org/download/{BIG}/big.bin"
        sizes.append(len(session.get(target, headers={"Range": "bytes=0-2097151"},
                                     timeout=10).content))

    started = time.monotonic()
    threads = [threading.Thread(target=download) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert sizes == [2 << 20] * workers
    assert 0.45 <= elapsed <= 1.5  # 2 MiB at 4 MiB/s each; a shared cap would take 2 s
    stats = emu.stats()
    assert stats["peak_active_transfers"] == workers
    assert stats["bytes_by_file"][f"{BIG}/big.bin"] == workers * (2 << 20)


# --- control endpoints and stats ------------------------------------------

def test_control_endpoints_through_the_proxy_and_directly(client, emu):
    session = client("http")
    session.get(url("http", "/metadata/demo-0001"), headers={"User-Agent": "probe/1"}, timeout=5)
    stats = session.get("http://emulator.invalid/_emu/stats", timeout=5).json()
    entry = stats["requests"][0]
    assert {"start", "end", "method", "host", "path", "query", "range", "status", "bytes",
            "conn", "fault", "user_agent", "auth", "kind", "tls"} <= set(entry)
    assert (entry["host"], entry["path"], entry["user_agent"]) == (
        "archive.org", "/metadata/demo-0001", "probe/1")
    direct = requests.Session()
    direct.trust_env = False
    base = emu.url + "/_emu"
    assert direct.post(f"{base}/config", json={"latency": 0.01}).json()["latency"] == 0.01
    assert direct.post(f"{base}/config", json={"latency": "soon"}).status_code == 400
    assert direct.post(f"{base}/inject", json={"pattern": "/metadata/*",
                                               "faults": ["503"]}).ok
    assert session.get(url("http", "/metadata/demo-0001"), timeout=5).status_code == 503
    assert direct.post(f"{base}/reset").ok
    after = direct.get(f"{base}/stats", params={"log": "0"}).json()
    assert "requests" not in after and after["requests_by_kind"] == {"control": 1}


# --- the catalog ----------------------------------------------------------

def test_catalog_is_deterministic():
    one = Catalog.generate(items=3, mix="realistic", seed=5)
    two = Catalog.generate(items=3, mix="realistic", seed=5)
    other = Catalog.generate(items=3, mix="realistic", seed=6)
    files = [(f.identifier, f.name, f.size, f.md5(), f.mtime) for f in one.all_files()]
    assert files == [(f.identifier, f.name, f.size, f.md5(), f.mtime) for f in two.all_files()]
    assert [f.size for f in other.all_files()] != [f.size for f in one.all_files()]
    assert "extras/notes — café ünï.txt" in one.items["demo-0001"].files
    big = CATALOG.file(BIG, "big.bin").content
    assert big.tile_length % 2 == 1 and big.tile_length > 1 << 20


# --- the CLI --------------------------------------------------------------

def test_cli_serve_writes_its_state_and_stops_on_sigterm(tmp_path):
    state = tmp_path / "state"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.emulator", "serve", "--state-dir", str(state),
         "--items", "3", "--mix", "realistic", "--special", "--latency", "0.001"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base_env())
    try:
        ready = json.loads(server.stdout.readline())
        assert ready["event"] == "ready"
        assert (state / "port").read_text().strip() == str(ready["port"])
        for name in ("ia.ini", "env.sh", "catalog.jsonl", "pid"):
            assert (state / name).exists(), name
        records = [json.loads(line) for line in (state / "catalog.jsonl").open()]
        record = next(r for r in records if r["name"] == "extras/notes — café ünï.txt")
        env = _sourced(state / "env.sh")
        assert env["http_proxy"] == ready["url"]
        session = requests.Session()
        session.proxies = {"http": env["http_proxy"]}
        quoted = urllib.parse.quote(record["name"])
        body = session.get(url("http", f"/download/{record['id']}/{quoted}"), timeout=5).content
        assert (len(body), md5(body)) == (record["size"], record["md5"])
        assert {r["state"] for r in records if "state" in r} == {
            "dark", "missing", "restricted", "metadata_not_json"}
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0, server.stderr.read()


def _sourced(env_sh):
    script = f". {env_sh} && env -0"
    output = subprocess.run(["bash", "-c", script], capture_output=True, check=True,
                            env={"PATH": os.environ["PATH"]}).stdout
    return dict(line.split("=", 1) for line in output.decode().split("\0") if "=" in line)


def test_cli_refuses_a_bad_setting(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tests.emulator", "serve", "--state-dir",
                           str(tmp_path / "s"), "--items", "1", "--reset-rate", "3"],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "reset_rate" in done.stderr
    assert not Path(tmp_path / "s" / "port").exists()
