"""The Python API's fetch, in this process, against the emulator: the
configuration reaches it as it reaches a user's program, through
IA_CONFIG_FILE and the proxy variables of the environment."""

import dataclasses
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from iatools.base.signals import STOP_SIGNALS
from iatools.base.status import ExitStatus
from iatools.commands import fetch as fetch_command
from iatools import IatoolsError, Router, search_jobs
from iatools.fetching.run import fetch
from iatools.fetching.settings import settings_from_keywords, settings_from_options
from tests.emulator import Catalog
from tests.helpers import jsonl_bytes, parse_jsonl
from tests.inprocess import call
from tests.trees import catalog_md5s, partial_files, tree_md5s


@pytest.fixture
def user_env(monkeypatch):
    """Make the process's environment ``env``, as a user's shell would."""
    def apply(env):
        for name in set(os.environ) - set(env):
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
    return apply


def outcomes(events):
    return {e["id"]: e for e in events if e["event"] in ("completed", "failed")}


def our_threads(before):
    """Threads started since ``before``, but the emulator's (one per client
    connection, which ends when the client's socket is collected)."""
    return [t for t in threading.enumerate()
            if t not in before and not t.name.endswith("(process_request_thread)")]


def test_fetch_yields_events_and_writes_the_tree_from_any_thread(emulator, user_env, tmp_path):
    emu, env = emulator
    user_env(env)
    ids = [item.identifier for item in emu.catalog.sorted_items()]
    jobs = [{"id": i, "batch": "b1"} for i in ids]

    def run_in_a_thread():  # no signal handler: signal.signal fails outside the main thread
        with fetch(jobs, workers=3, destdir=tmp_path) as events:
            return list(events)
    with ThreadPoolExecutor(1) as pool:
        events = pool.submit(run_in_a_thread).result(timeout=120)
    assert [e["event"] for e in events].count("started") == len(ids)
    done = outcomes(events)
    assert set(done) == set(ids)
    for identifier, event in done.items():
        assert event["event"] == "completed", event
        assert event["batch"] == "b1" and event["destdir"] == str(tmp_path)
        assert event["bytes"] == emu.catalog.items[identifier].item_size
    assert tree_md5s(tmp_path) == catalog_md5s(emu.catalog)
    assert jobs[0] == {"id": ids[0], "batch": "b1"}  # the caller's jobs are left alone


def test_a_bad_job_fails_as_a_bad_input_line_does(emulator, user_env, tmp_path, capsys):
    emu, env = emulator
    user_env(env)
    good = emu.catalog.sorted_items()[0].identifier
    jobs = [{"file": "x"}, "a plain string", {"id": good, "size": -5}, {"id": good}]
    with fetch(jobs, destdir=tmp_path) as run:
        events = list(run)
        assert run.bad_jobs == 3 and run.failed == 1
    failed = [e for e in events if e["event"] == "failed"]
    assert len(failed) == 1 and failed[0]["retryable"] is False
    assert failed[0]["error"].startswith("job 3: ")
    assert outcomes(events)[good]["event"] == "completed"
    stderr = capsys.readouterr().err
    assert "job 1: job has no \"id\"; skipped" in stderr
    assert "job 2: not a JSON object (a str); skipped" in stderr


def test_each_fetch_tells_of_its_own_bad_jobs(emulator, user_env, tmp_path, capsys):
    """Past the cap of messages, the number of bad jobs is told at the end;
    a second fetch in the same program tells of its own."""
    emu, env = emulator
    user_env(env)
    for _ in range(2):
        with fetch([{"id": 5}] * 12, destdir=tmp_path) as run:
            assert list(run) == [] and run.bad_jobs == 12
        stderr = capsys.readouterr().err
        assert "job 1: " in stderr
        assert "12 bad lines skipped in all" in stderr


def test_options_are_ia_fetchs_with_its_checks(emulator, user_env, tmp_path):
    emu, env = emulator
    user_env({k: v for k, v in env.items() if k != "IA_CONFIG_FILE"})
    item = emu.catalog.sorted_items()[0]
    with fetch([{"id": item.identifier}], destdir=tmp_path, dry_run=True, glob=["*.xml"],
               config_file=env["IA_CONFIG_FILE"], halt="soon,fail=1") as events:
        planned = [e for e in events if e["event"] == "planned"]
    assert {p["name"] for p in planned[0]["plan"]} == {
        name for name in item.files if name.endswith(".xml")}
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError, match="'no_such_option'"):
        fetch([], no_such_option=1)
    with pytest.raises(ValueError, match="--retries must be 0 or more"):
        fetch([], retries=-1)
    with pytest.raises(ValueError, match="invalid --halt"):
        fetch([], halt="sometimes")
    with pytest.raises(ValueError, match="argument --timeout"):
        fetch([], timeout=0)
    with pytest.raises(ValueError, match="not a directory"):
        fetch([], destdir=tmp_path / "missing")
    with pytest.raises(ValueError, match="cannot read config file"):
        fetch([], config_file=str(tmp_path / "missing.ini"))
    # One kind of error for every function of the API: what the commands
    # report (IatoolsError), a ValueError as well when it is a bad value.
    user_env({**env, "IA_CONFIG_FILE": str(tmp_path / "missing.ini")})
    for bad in (lambda: fetch([]), lambda: fetch([], retries=-1),
                lambda: Router([tmp_path / "missing"]),
                lambda: next(search_jobs("collection:x"))):
        with pytest.raises(IatoolsError) as raised:
            bad()
        assert isinstance(raised.value, ValueError), raised.value


def test_stop_midway_then_resume_completes_every_file(make_emulator, user_env, tmp_path):
    catalog = Catalog.generate(items=8, files_per_item=2, file_size=256 * 1024)
    emu, env = make_emulator(catalog, bandwidth=512 << 10)
    user_env(env)
    ids = [item.identifier for item in catalog.sorted_items()]
    before = set(threading.enumerate())
    with fetch([{"id": i} for i in ids], workers=2, destdir=tmp_path) as run:
        events = []
        for event in run:
            events.append(event)
            if event["event"] == "completed" and not run.stopped:
                threading.Thread(target=run.stop).start()  # from another thread
    done = outcomes(events)
    completed = [i for i, e in done.items() if e["event"] == "completed"]
    interrupted = [e for e in done.values() if e["event"] == "failed"]
    assert 0 < len(completed) < len(ids)
    assert interrupted and all(e["retryable"] and "interrupted" in e["error"]
                               for e in interrupted)
    assert {e["id"] for e in events if e["event"] == "started"} == set(done)
    time.sleep(0.1)  # the stopping thread itself ends
    assert our_threads(before) == []
    expected = catalog_md5s(catalog)
    assert all(expected[name] == md5 for name, md5 in tree_md5s(tmp_path).items()
               if not name.endswith(".iatools-part")), "a final name holds a wrong file"
    emu.configure(bandwidth=0)
    remaining = [{"id": i} for i in ids if i not in completed]
    with fetch(remaining, workers=2, destdir=tmp_path) as run:
        assert all(e["event"] == "completed" for e in outcomes(run).values())
    assert tree_md5s(tmp_path) == expected
    assert partial_files(tmp_path) == []


def test_leaving_the_loop_stops_the_fetch_and_its_threads(make_emulator, user_env, tmp_path):
    catalog = Catalog.generate(items=6, files_per_item=1, file_size=1 << 20)
    emu, env = make_emulator(catalog, bandwidth=256 << 10)
    user_env(env)
    before = set(threading.enumerate())
    with fetch([{"id": item.identifier} for item in catalog.sorted_items()],
               destdir=tmp_path) as events:
        for event in events:
            break
    assert event["event"] == "started"
    assert our_threads(before) == []
    assert all(name.endswith(".iatools-part") or catalog_md5s(catalog)[name] == md5
               for name, md5 in tree_md5s(tmp_path).items())


def test_leaving_the_block_returns_as_soon_as_the_jobs_have_ended(make_emulator, user_env,
                                                                   tmp_path):
    """As ia-fetch on Ctrl-C: a worker waiting for response headers, and a
    jobs iterable that has nothing to give yet, are not waited for; they end
    by themselves (at --timeout, at the next job), their jobs ended."""
    catalog = Catalog.generate(items=3, files_per_item=1, file_size=1024)
    emu, env = make_emulator(catalog, stall_seconds=60)
    user_env(env)
    first, stalled, _ = catalog.sorted_items()
    emu.inject(f"/metadata/{stalled.identifier}", ["stall"])
    more = threading.Event()

    def jobs():
        yield {"id": first.identifier}
        yield {"id": stalled.identifier}
        more.wait(60)

    before = set(threading.enumerate())
    with fetch(jobs(), workers=2, destdir=tmp_path, timeout=6) as events:
        for event in events:
            if event["event"] == "completed":
                break
        time.sleep(0.5)  # the stalled request is in its silence
        left = time.monotonic()
    took = time.monotonic() - left
    assert took < 3, f"leaving the block took {took:.1f} s"
    more.set()
    deadline = time.monotonic() + 15
    while our_threads(before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert our_threads(before) == []


def test_an_error_of_the_jobs_iterable_ends_the_iteration(emulator, user_env, tmp_path):
    emu, env = emulator
    user_env(env)
    good = emu.catalog.sorted_items()[0].identifier

    def jobs():
        yield {"id": good}
        raise OSError("the job source broke")
    with fetch(jobs(), destdir=tmp_path) as events:
        seen = []
        with pytest.raises(OSError, match="the job source broke"):
            for event in events:
                seen.append(event)
    assert outcomes(seen)[good]["event"] == "completed"


def test_ia_fetch_runs_in_process_on_its_streams_and_leaves_the_process_as_it_was(
        emulator, user_env, tmp_path):
    emu, env = emulator
    user_env(env)
    good = emu.catalog.sorted_items()[0].identifier
    handlers = [signal.getsignal(signum) for signum in STOP_SIGNALS]
    pipes = open_pipes()
    outcome = call(fetch_command.main, ["-v", "-d", tmp_path],
                   stdin=jsonl_bytes([{"id": good}]) + b"not json\n")
    assert outcome.status == ExitStatus.FAILED
    assert outcomes(parse_jsonl(outcome.stdout))[good]["event"] == "completed"
    assert "ia-fetch: error: input line 2: invalid JSON" in outcome.stderr
    assert "ia-fetch: 1 completed, 0 failed" in outcome.stderr  # -v's summary, there too
    assert [signal.getsignal(signum) for signum in STOP_SIGNALS] == handlers
    assert open_pipes() == pipes  # its wake-up pipe closed (sockets close when collected)


def open_pipes():
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the descriptor listdir itself used
        if target.startswith("pipe:"):
            found.add(fd)
    return found


def test_keywords_and_the_command_line_make_the_same_settings(emulator, user_env, tmp_path):
    emu, env = emulator
    user_env(env)
    argv = ["-j", "6", "-d", str(tmp_path), "--glob=*.pdf", "--glob=*.epub", "-C",
            "--halt", "soon,fail=10%", "--bwlimit", "1M", "--lock-timeout", "30m",
            "--retries", "2", "--timeout", "5", "--no-fsync"]
    keywords = dict(workers=6, destdir=tmp_path, glob=["*.pdf", "*.epub"], checksum=True,
                    halt="soon,fail=10%", bwlimit="1M", lock_timeout="30m", retries=2,
                    timeout=5, no_fsync=True)
    for options, arguments in (({}, []), (keywords, argv)):
        ours = settings_from_keywords(**options)
        theirs = settings_from_options(fetch_command.build_parser().parse_args(arguments))
        assert comparable(ours) == comparable(theirs)
        assert ours.client.timeout == theirs.client.timeout


def comparable(settings):
    """The settings but the HTTP session and client, which are new objects."""
    return {field.name: getattr(settings, field.name) for field in dataclasses.fields(settings)
            if field.name not in ("session", "client")}


def test_a_fetch_dropped_unfinished_stops(make_emulator, user_env, tmp_path):
    catalog = Catalog.generate(items=6, files_per_item=1, file_size=1 << 20)
    emu, env = make_emulator(catalog, bandwidth=256 << 10)
    user_env(env)
    before = set(threading.enumerate())
    events = fetch([{"id": item.identifier} for item in catalog.sorted_items()],
                   destdir=tmp_path)
    assert next(events)["event"] == "started"
    del events  # no with, no stop(): collected, it stops
    deadline = time.monotonic() + 10
    while our_threads(before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert our_threads(before) == []
    assert len(list(tmp_path.glob("*/*.bin"))) < len(catalog.items)
