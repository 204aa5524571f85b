"""ia-route's main and the Router under it, called in-process: the disks
are directories of this test, the jobs streams of bytes or dicts."""

import json
from pathlib import Path

import pytest

from iatools.base.status import ExitStatus
from iatools.commands.route import main
from iatools.contract.jsonl import BadLine
from iatools.routing.router import Router
from tests.inprocess import call


@pytest.fixture
def disks(tmp_path):
    paths = [tmp_path / "a", tmp_path / "b"]
    for path in paths:
        path.mkdir()
    return [str(path) for path in paths]


def spread(disks):
    return ["--no-disk-check", "-d", disks[0], "-d", disks[1]]


def test_jobs_get_a_destdir_and_keep_their_bytes_and_order(disks):
    jobs = b"".join(b'{"id":"item%d","size":10,"n":%d}\n' % (i % 7, i) for i in range(50))
    outcome = call(main, spread(disks), stdin=jobs)
    assert (outcome.status, outcome.stderr) == (ExitStatus.OK, "")
    routed = [json.loads(line) for line in outcome.lines()]
    assert [job["n"] for job in routed] == list(range(50))
    home = {}
    for line, job in zip(outcome.lines(), routed):
        assert line.startswith('{"id":"%s","size":10,"n":%d,"destdir":' % (job["id"], job["n"]))
        assert home.setdefault(job["id"], job["destdir"]) == job["destdir"]
    assert set(home.values()) == set(disks)


def test_bad_lines_are_reported_by_number_and_the_good_ones_flow(disks):
    stdin = b'{"id":"x"}\r\nnot json\n\n{"id":"a/b"}\n# comment\n{"id":"y","file":"f.txt"}'
    outcome = call(main, spread(disks), stdin=stdin)
    assert outcome.status == ExitStatus.FAILED
    assert [json.loads(line)["id"] for line in outcome.lines()] == ["x", "y"]
    assert [m.split(": ")[2] for m in outcome.messages()] == ["input line 2", "input line 4"]


def test_a_job_with_a_destdir_passes_unless_forced(disks):
    stdin = b'{"id":"x","destdir":"/elsewhere"}\n'
    assert call(main, spread(disks), stdin=stdin).stdout == stdin
    forced = json.loads(call(main, spread(disks) + ["--force"], stdin=stdin).stdout)
    assert forced["destdir"] in disks


def test_a_missing_disk_is_a_usage_error_on_the_given_stderr(tmp_path):
    outcome = call(main, ["-d", tmp_path / "nowhere"], stdin=b'{"id":"x"}\n')
    assert (outcome.status, outcome.stdout) == (ExitStatus.USAGE, b"")
    assert outcome.messages() == [f"ia-route: error: disk {tmp_path / 'nowhere'}: "
                                  "No such file or directory"]


def test_counts_announced_upstream_are_passed_on(disks):
    outcome = call(main, spread(disks), stdin=b'# total 1\n{"id":"x"}\n')
    assert outcome.lines()[0] == "# total 1"


def test_router_routes_dicts_an_item_to_one_disk(disks):
    router = Router(disks, disk_check=False)
    jobs = [{"id": "x", "file": "1"}, {"id": "y"}, {"id": "x", "file": "2"},
            {"id": "z", "destdir": "/kept"}]
    routed = list(router.route(jobs))
    assert [{k: v for k, v in job.items() if k != "destdir"} for job in routed] \
        == [{k: v for k, v in job.items() if k != "destdir"} for job in jobs]
    assert routed[0]["destdir"] == routed[2]["destdir"] and routed[0]["destdir"] in disks
    assert routed[3]["destdir"] == "/kept"
    assert "destdir" not in jobs[0]  # the caller's dicts are left as they were


def test_router_goes_back_to_the_disk_holding_an_item(disks):
    (Path(disks[1]) / "other").mkdir()  # its hash would choose disk a
    router = Router(disks, disk_check=False)
    assert [job["destdir"] for job in router.route([{"id": "other"}] * 3)] == [disks[1]] * 3


def test_router_by_free_space_skips_a_job_larger_than_the_disk(disks, capsys):
    router = Router(disks[:1], margin=0)
    routed = list(router.route([{"id": "small", "size": 10}, {"id": "huge", "size": 1 << 62}]))
    assert routed == [{"id": "small", "size": 10, "destdir": disks[0]}]
    assert router.skipped == 1
    assert "huge: " in capsys.readouterr().err


def test_router_raises_on_a_dict_that_is_no_job(disks):
    with pytest.raises(BadLine, match='"size" must be a whole number'):
        list(Router(disks, disk_check=False).route([{"id": "x", "size": "big"}]))
