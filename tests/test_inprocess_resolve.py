"""ia-resolve's main and the API under it (item_jobs, search_jobs), called
in-process on streams of bytes; the emulator is reached as a user's install
reaches it, through IA_CONFIG_FILE and the proxy variables."""

import json

import pytest

from iatools.base.status import ExitStatus
from iatools.commands.resolve import main
from iatools.contract.itemlist import item_jobs
from iatools.contract.jsonl import BadLine
from iatools.fetching.search import search_jobs
from tests.emulator import Catalog
from tests.inprocess import call


def jobs_of(outcome):
    return [json.loads(line) for line in outcome.lines() if not line.startswith("#")]


def test_identifiers_become_jobs():
    outcome = call(main, ["nasa", "gov.archives.arc.1"])
    assert (outcome.status, outcome.stderr) == (ExitStatus.OK, "")
    assert jobs_of(outcome) == [{"id": "nasa"}, {"id": "gov.archives.arc.1"}]


def test_a_bad_argument_is_reported_by_position_and_the_others_flow():
    outcome = call(main, ["nasa", "bad/id", "x"])
    assert outcome.status == ExitStatus.FAILED
    assert jobs_of(outcome) == [{"id": "nasa"}, {"id": "x"}]
    assert outcome.messages() == [
        "ia-resolve: error: argument 2: identifier has characters archive.org does not allow: "
        "'bad/id'; skipped"]


def test_an_item_list_on_stdin_reports_each_bad_line_by_number():
    itemlist = (b"nasa\r\n\n# a comment\nbad id\n{\"id\": \"x\", \"batch\": 2}\n[1]\n"
                b"{\"id\": \"a..b\"}\nlast")  # CRLF, and no newline at the end
    outcome = call(main, ["-i", "-"], stdin=itemlist)
    assert outcome.status == ExitStatus.FAILED
    assert jobs_of(outcome) == [{"id": "nasa"}, {"id": "x", "batch": 2}, {"id": "last"}]
    problems = [m.split(": ", 3)[2] for m in outcome.messages()]
    assert problems == ["stdin line 4", "stdin line 6", "stdin line 7"]
    assert all(m.endswith("; skipped") for m in outcome.messages())


def test_fields_are_added_and_a_reserved_one_is_a_usage_error():
    outcome = call(main, ["--field", "batch=7", "nasa"])
    assert jobs_of(outcome) == [{"id": "nasa", "batch": "7"}]
    refused = call(main, ["--field", "size=1", "nasa"])
    assert (refused.status, refused.stdout) == (ExitStatus.USAGE, b"")
    assert refused.messages() == [
        "ia-resolve: error: --field 'size=1': size is set by ia-resolve itself"]


def test_nothing_to_resolve_is_a_usage_error():
    outcome = call(main, [])
    assert outcome.status == ExitStatus.USAGE
    assert "nothing to resolve" in outcome.stderr


def test_a_terminal_on_stdin_gets_its_hint_on_the_given_stderr():
    outcome = call(main, ["-i", "-"], stdin=b"nasa\n", stdin_is_terminal=True)
    assert outcome.messages()[0].startswith("ia-resolve: warning: reading an item list from "
                                            "the terminal")
    assert jobs_of(outcome) == [{"id": "nasa"}]


@pytest.mark.parametrize("option, start", [("--help", "usage: ia-resolve"),
                                           ("--version", "ia-resolve (iatools) ")])
def test_help_and_version_go_to_the_given_stdout(option, start, capsys):
    outcome = call(main, [option])
    assert (outcome.status, outcome.stderr) == (ExitStatus.OK, "")
    assert outcome.stdout.decode().startswith(start)
    assert capsys.readouterr() == ("", "")  # nothing on the process's own streams


def test_item_jobs_makes_a_job_of_each_identifier():
    assert list(item_jobs(["nasa", "x"])) == [{"id": "nasa"}, {"id": "x"}]
    jobs = item_jobs(["nasa", "a b"])
    assert next(jobs) == {"id": "nasa"}
    with pytest.raises(BadLine, match="characters archive.org does not allow"):
        next(jobs)
    assert issubclass(BadLine, ValueError)


@pytest.fixture
def user_environment(make_emulator, monkeypatch):
    """The emulator, and this process's environment set as a user's shell
    would be to reach it (the config file and proxy variables); the
    emulator and its catalog."""
    catalog = Catalog.generate(items=250, files_per_item=1, file_size=10, collection="demo")
    emulator, env = make_emulator(catalog)
    for name in ("IA_CONFIG_FILE", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                 "no_proxy", "NO_PROXY", "REQUESTS_CA_BUNDLE"):
        if name in env:
            monkeypatch.setenv(name, env[name])
        else:
            monkeypatch.delenv(name, raising=False)
    return emulator, catalog


def test_search_jobs_yields_every_item_with_its_size_version_and_fields(user_environment):
    _, catalog = user_environment
    jobs = list(search_jobs("collection:demo", fields=("title",)))
    by_id = catalog.items
    assert sorted(job["id"] for job in jobs) == sorted(by_id)
    for job in jobs:
        item = by_id[job["id"]]
        assert (job["size"], job["title"]) == (item.item_size, item.title)
        assert job["updated"].endswith("Z")


def test_search_jobs_refuses_a_field_the_job_holds_itself():
    with pytest.raises(ValueError, match="size"):
        next(search_jobs("collection:demo", fields=("size",)))


def test_resolve_search_in_process_announces_the_total(user_environment):
    _, catalog = user_environment
    outcome = call(main, ["--total", "--page-size", "100", "--search", "collection:demo"])
    assert outcome.status == ExitStatus.OK, outcome.stderr
    assert outcome.lines()[0] == f"# total {len(catalog.items)}"
    assert len(jobs_of(outcome)) == len(catalog.items)
