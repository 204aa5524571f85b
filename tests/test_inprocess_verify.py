"""ia-verify's and ia-fetch's main called in-process: their input read from a
stream of bytes, their events and messages written to the streams given.
The emulator is reached as a user's install reaches it (IA_CONFIG_FILE and
the proxy variables, in this process's environment)."""

import json

import pytest

from iatools.base.status import ExitStatus
from iatools.commands import fetch, verify
from tests.emulator import Catalog
from tests.inprocess import call

#: Two bad lines, and a job whose id is usable but whose size is not.
BAD_INPUT = b'not json\n{"id": "a/b"}\n{"id": "demo-0000", "size": -1}\n'


@pytest.fixture
def user_environment(make_emulator, monkeypatch):
    """An emulator of one item, and this process's environment set as a
    user's shell would be to reach it; the catalog."""
    catalog = Catalog.generate(items=1, files_per_item=3, file_size=1000, collection="demo")
    _, env = make_emulator(catalog)
    for name in ("IA_CONFIG_FILE", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                 "no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    return catalog


@pytest.mark.parametrize("main", [verify.main, fetch.main], ids=["ia-verify", "ia-fetch"])
def test_bad_lines_are_reported_on_the_given_stderr(main, tmp_path, user_environment):
    outcome = call(main, ["-d", tmp_path], stdin=BAD_INPUT)
    assert outcome.status == ExitStatus.FAILED
    prog = "ia-verify" if main is verify.main else "ia-fetch"
    assert [m.split(": ")[:3] for m in outcome.messages()][:2] == [
        [prog, "error", "input line 1"], [prog, "error", "input line 2"]]
    events = [json.loads(line) for line in outcome.lines()]
    assert [(e["event"], e["id"]) for e in events] == [("failed", "demo-0000")]
    assert events[0]["error"].startswith("input line 3: ")


def write_item(catalog, destdir):
    item = next(iter(catalog.items.values()))
    folder = destdir / item.identifier
    folder.mkdir()
    for name, file in item.files.items():
        (folder / name).write_bytes(file.content.read())
    return item, folder


def test_verify_finds_a_whole_item_and_then_a_damaged_one(tmp_path, user_environment):
    item, folder = write_item(user_environment, tmp_path)
    job = json.dumps({"id": item.identifier}).encode() + b"\n"
    outcome = call(verify.main, ["-d", tmp_path], stdin=job)
    assert (outcome.status, outcome.stderr) == (ExitStatus.OK, "")
    assert json.loads(outcome.stdout)["event"] == "verified"
    name = sorted(n for n in item.files if not item.files[n].is_files_xml)[0]
    (folder / name).write_bytes(b"x" * item.files[name].size)
    damaged = call(verify.main, ["-d", tmp_path], stdin=job)
    assert damaged.status == ExitStatus.FAILED
    event = json.loads(damaged.stdout)
    assert (event["event"], event["files_wrong_md5"]) == ("damaged", [name])
    assert damaged.messages() == [f"ia-verify: warning: {item.identifier}: damaged "
                                  "(1 wrong md5)"]


def test_fetch_writes_its_summary_to_the_given_stderr(tmp_path, user_environment, capfd):
    item = next(iter(user_environment.items.values()))
    job = json.dumps({"id": item.identifier}).encode() + b"\n"
    outcome = call(fetch.main, ["-v", "-d", tmp_path], stdin=job)
    assert outcome.status == ExitStatus.OK, outcome.stderr
    assert [json.loads(line)["event"] for line in outcome.lines()] == ["started", "completed"]
    assert outcome.messages()[-1].startswith("ia-fetch: 1 ")
    assert capfd.readouterr() == ("", "")  # nothing on the process's own fds
