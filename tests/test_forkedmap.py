"""iatools.base.forkedmap: the work shared by forked children, the results
in order, every failure told, no child left behind; and pending,
completed and skip doing the same on one core as on two.

Each case runs in a fresh interpreter: the pytest process may have
threads, where ordered_map does not fork."""

import os
import re
import subprocess
import textwrap
import time
import zlib

import pytest

from tests.helpers import PYTHON, REPO, base_env, command, run

JOBLOG = command("ia-joblog")
two_cores = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: no fork")


def in_fresh_python(code, stdin=None):
    """Run ``code`` (after the imports every case needs) in a new interpreter
    (its stdin: the bytes ``stdin``)."""
    prelude = textwrap.dedent("""\
        import os, signal, sys, threading, time
        from iatools.base import errors
        from iatools.base.forkedmap import computed_ahead, ordered_map
        def children_left():
            try:
                os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            return True
    """)
    return subprocess.run([PYTHON, "-c", prelude + textwrap.dedent(code)], capture_output=True,
                          input=stdin, env=base_env(PYTHONPATH=str(REPO)), timeout=60,
                          text=stdin is None)


@two_cores
def test_results_come_in_order_from_children():
    result = in_fresh_python("""
        def work(n):
            return f"{n}:{os.getpid()};".encode() * (n * 50_000)  # some results past a pipe-full
        got = list(ordered_map(work, range(9)))
        assert [r[:r.index(b":")] for r in got[1:]] == [str(n).encode() for n in range(1, 9)], got
        assert got[0] == b""
        pids = {r.split(b":")[1].split(b";")[0] for r in got[1:]}
        assert str(os.getpid()).encode() not in pids and len(pids) == 2, pids
        assert not children_left()
        print("ok")
    """)
    assert result.stdout == "ok\n", result.stderr


def test_a_process_with_threads_does_the_work_itself():
    result = in_fresh_python("""
        threading.Thread(target=time.sleep, args=(2,), daemon=True).start()
        got = list(ordered_map(lambda n: str(os.getpid()).encode(), range(4)))
        assert set(got) == {str(os.getpid()).encode()}, got
        print("ok")
    """)
    assert result.stdout == "ok\n", result.stderr


@two_cores
@pytest.mark.parametrize("error, told", [
    ('errors.UsageError("log.jsonl was cut short")', "UsageError log.jsonl was cut short"),
    ('FileNotFoundError(2, "No such file or directory", "log.jsonl")',
     "FileNotFoundError 2 log.jsonl No such file or directory"),
])
def test_an_error_in_a_child_is_raised_again_as_it_was(error, told):
    """The same class and arguments as the work done in turn raises: the
    command says the same on one core as on two (an OSError names its
    file), and exits with the same status."""
    result = in_fresh_python(f"""
        def work(n):
            if n == 5:
                raise {error}
            return b"x"
        try:
            list(ordered_map(work, range(8)))
        except Exception as exc:
            print(type(exc).__name__, *(exc.args if not isinstance(exc, OSError)
                                        else (exc.errno, exc.filename, exc.strerror)))
        assert not children_left()
    """)
    assert result.stdout == told + "\n", result.stderr


@two_cores
def test_a_child_killed_is_an_error_not_a_short_result():
    result = in_fresh_python("""
        def work(n):
            if n == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return b"x"
        got = []
        try:
            for r in ordered_map(work, range(8)):
                got.append(r)
        except errors.IatoolsError as exc:
            print(len(got), exc)
        assert not children_left()
    """)
    assert result.stdout == "3 a process sharing the work ended without its results\n", \
        result.stderr


@two_cores
def test_a_reader_that_stops_early_leaves_no_child_behind():
    result = in_fresh_python("""
        results = ordered_map(lambda n: time.sleep(0.05) or b"x" * 1_000_000, range(100))
        next(results)
        results.close()
        assert not children_left()
        print("ok")
    """)
    assert result.stdout == "ok\n", result.stderr


def one_core():
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


@two_cores
@pytest.mark.parametrize("reader", ["pending", "completed"])
def test_readers_print_the_same_on_one_core_as_on_two(tmp_path, reader):
    """Past one batch of lines (65,536), a reader's output is shared out:
    byte for byte what one core prints, and printed whole through a pipe
    a reader closes early."""
    log = tmp_path / "log.jsonl"
    jobs = b"".join(b'{"id":"item_%06d","size":%d}\n' % (n, n) for n in range(150_000))
    assert run([JOBLOG, "skip", str(log)], input=jobs).returncode == 0
    done = b"".join(b'{"event":"completed","id":"item_%06d","files":1,"bytes":%d}\n' % (n, n)
                    for n in range(0, 150_000, 2))
    assert run([JOBLOG, "append", str(log)], input=done).returncode == 0
    on_two = run([JOBLOG, reader, str(log)])
    on_one = subprocess.run([JOBLOG, reader, str(log)], capture_output=True, env=base_env(),
                            preexec_fn=one_core, timeout=120)
    assert on_two.returncode == on_one.returncode == 0, on_two.stderr
    assert on_two.stdout.count(b"\n") == 75_000
    assert on_two.stdout == on_one.stdout
    head = subprocess.run(f"{JOBLOG} {reader} {log} | head -n 3", shell=True,
                          capture_output=True, env=base_env(), timeout=60)
    assert head.returncode == 0 and head.stdout.count(b"\n") == 3 and not head.stderr


@two_cores
def test_computed_ahead_reads_the_items_in_a_child():
    result = in_fresh_python("""
        chunks = iter(lambda: os.read(0, 1000), b"")
        got = list(computed_ahead(lambda chunk: (os.getpid(), chunk), chunks))
        assert b"".join(chunk for _, chunk in got) == b"x" * 2_000_000
        assert {pid for pid, _ in got} - {os.getpid()} and len({pid for pid, _ in got}) == 1
        assert not children_left()
        print("ok")
    """, stdin=b"x" * 2_000_000)
    assert result.stdout == b"ok\n", result.stderr


@two_cores
def test_computed_ahead_raises_again_what_reading_the_items_raised():
    result = in_fresh_python("""
        def chunks():
            yield 1
            yield 2
            raise errors.UsageError("cannot read jobs: Input/output error")
        got = []
        try:
            for n in computed_ahead(lambda n: n * 10, chunks()):
                got.append(n)
        except errors.UsageError as exc:
            print(got, exc)
        assert not children_left()
    """)
    assert result.stdout == "[10, 20] cannot read jobs: Input/output error\n", result.stderr


def test_computed_ahead_in_a_process_with_threads_reads_the_items_itself():
    result = in_fresh_python("""
        threading.Thread(target=time.sleep, args=(2,), daemon=True).start()
        got = list(computed_ahead(lambda n: os.getpid(), range(4)))
        assert got == [os.getpid()] * 4, got
        print("ok")
    """)
    assert result.stdout == "ok\n", result.stderr


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as file:
            return [int(child) for child in file.read().split()]
    except FileNotFoundError:
        pytest.skip("no /proc/PID/task/PID/children here")


def _gone(pid):
    """Has the process ended (a zombie no one reaped counts)?"""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@two_cores
def test_skip_killed_leaves_no_child_waiting_on_its_input(tmp_path):
    """The child that reads skip's jobs would otherwise wait on an input
    that never ends, with a copy of the log's descriptor (and its lock)."""
    log = tmp_path / "log.jsonl"
    skip = subprocess.Popen([JOBLOG, "skip", str(log)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=base_env())
    try:
        skip.stdin.write(b'{"id":"first"}\n')
        skip.stdin.flush()
        assert skip.stdout.readline() == b'{"id":"first"}\n'
        children = _children(skip.pid)
        assert len(children) == 1, children
        skip.kill()
        skip.wait(timeout=10)
        deadline = time.monotonic() + 5
        while not _gone(children[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(children[0])
        appended = run([JOBLOG, "append", str(log)], input=b'{"event":"started","id":"x"}\n',
                       timeout=10)
        assert appended.returncode == 0, appended.stderr
    finally:
        skip.kill()
        skip.stdin.close()
        skip.stdout.close()


def _without_stamps(log):
    """A log's lines without what tells when, where and by whom they were
    written."""
    return re.sub(rb',"ts":"[^"]*","host":"[^"]*","pid":[0-9]+', b"", log.read_bytes())


@two_cores
def test_skip_does_the_same_on_one_core_as_on_two(tmp_path):
    """Into a new log (noting every key for the checkpoints), then against
    completions (one job changed upstream since): the same jobs passed on,
    the same events recorded, the same bad line told, the same checkpoints'
    answers."""
    jobs = b"".join(b'{"id":"item_%06d","size":%d,"updated":"1"}\n' % (n, n)
                    for n in range(150_000))
    # A chunk of lines the full parser takes (non-ASCII, a bad line).
    jobs += ('{"id":"item_x","file":"caf\u00e9.txt"}\nnot json\n'
             '{"id":"item_000004","updated":"2"}\n').encode()
    done = b"".join(b'{"event":"completed","id":"item_%06d","size":%d,"updated":"1",'
                    b'"files":1,"bytes":%d}\n' % (n, n, n) for n in range(0, 150_000, 2))
    seen = []
    for cores in (None, one_core):
        log = tmp_path / f"{len(seen)}" / "log.jsonl"
        log.parent.mkdir()
        runs = []
        for stdin in (jobs, done, jobs):
            command_ = "append" if stdin is done else "skip"
            runs.append(subprocess.run([JOBLOG, command_, str(log)], input=stdin,
                                       capture_output=True, env=base_env(), preexec_fn=cores,
                                       timeout=120))
        status = run([JOBLOG, "status", "--json", str(log)]).stdout
        seen.append(([(r.returncode, r.stdout, r.stderr) for r in runs],
                     _without_stamps(log), re.sub(rb',"last_event.*', b"", status)))
    assert seen[0] == seen[1]
    (first, _, _), _, (again, _, _) = seen[0][0]
    assert first == again == 1  # (the bad line)
    # The jobs never completed (item_x too), and the one changed upstream.
    assert seen[0][0][2][1].count(b"\n") == 75_000 + 1 + 1


@two_cores
def test_a_long_log_is_read_the_same_on_one_core_as_on_two(tmp_path):
    """Past 64 MB, a first reading parses the log in blocks in forked
    children: the same jobs skipped and printed, the same counts, the same
    bad lines told with the same numbers (one deep inside a block, a torn
    last line), and the checkpoint at the end of the whole lines, with
    their CRC-32."""
    from iatools.log import checkpoint
    jobs = b"".join(b'{"id":"item_%07d","size":%d,"updated":"1"}\n' % (n, n)
                    for n in range(300_000))
    events = [b'{"event":"completed","id":"item_%07d","size":%d,"updated":"1","ts":'
              b'"2026-11-01T00:00:00.000Z","host":"h","pid":1,"files":1,"bytes":%d,"x":"%s"}\n'
              % (n, n, n, b"y" * 120) for n in range(0, 300_000)]
    events[150_000] = b'{"event":"failed","id":"item_0150000","retryable":false}\n'
    events[200_000] = b'{"event":"completed","id":"item_0200000","bytes":\n'
    seen = []
    for cores in (None, one_core):
        log = tmp_path / f"{len(seen)}" / "log.jsonl"
        log.parent.mkdir()
        assert run([JOBLOG, "skip", str(log)], input=jobs).returncode == 0
        with open(log, "ab") as file:  # (as a log copied from elsewhere: the bad line too)
            file.write(b"".join(events) + b'{"event":"completed","id":"torn')
        assert log.stat().st_size > 70 << 20
        whole = log.read_bytes()[:-len(b'{"event":"completed","id":"torn')]
        for path in log.parent.glob("*-checkpoint"):
            if "stamp" not in path.name:
                path.unlink()  # a first reading
        runs = [subprocess.run([JOBLOG, *reader, str(log)], input=jobs, capture_output=True,
                               env=base_env(), preexec_fn=cores, timeout=120)
                for reader in (["skip"], ["completed"], ["status", "--json"], ["failed"],
                               ["pending"])]
        seen.append([(r.returncode, re.sub(rb'"last_event":"[^"]*"|"(last_event_)?seconds_ago'
                                           rb'":[0-9.]+', b"", r.stdout),
                      r.stderr.replace(str(log).encode(), b"LOG")) for r in runs])
        assert checkpoint.covered(str(log), "completed") == checkpoint.Position(
            len(whole), 600_001, zlib.crc32(whole))
    assert seen[0] == seen[1]
    (_, passed, told), (_, printed, _), (_, status, told_again), (_, failed, _), \
        (_, pending, _) = seen[0]
    assert printed.count(b"\n") == 300_000 - 2 and passed.count(b"\n") == 1
    assert b"line 500001: invalid JSON" in told and b"line 600001 is incomplete" in told
    assert b"line 500001: invalid JSON" in told_again
    assert b'"completed":299998,' in status and b'"failed":1,' in status
    assert failed.count(b"\n") == 1 and pending.count(b"\n") == 2


@two_cores
def test_a_long_tail_after_the_checkpoints_is_read_the_same_on_one_core_as_on_two(tmp_path):
    """A tail past 64 MB after pending's checkpoints, looked up among the
    completed keys of the checkpoint by the children: the same jobs.  (J1
    once saw "not a key set" here: the children read the keys in from
    their checkpoint section, through one file offset they share; they are
    now read in before the fork.  This case did not make the old code fail
    in three runs of three readings on two cores.)"""
    log = tmp_path / "log.jsonl"
    jobs = b"".join(b'{"id":"item_%07d","size":%d}\n' % (n, n) for n in range(300_000))
    assert run([JOBLOG, "skip", str(log)], input=jobs).returncode == 0
    done = b"".join(b'{"event":"completed","id":"item_%07d","files":1,"bytes":1}\n' % n
                    for n in range(0, 300_000, 3))
    assert run([JOBLOG, "append", str(log)], input=done).returncode == 0
    for reader in ("completed", "pending"):  # (their checkpoints)
        assert run([JOBLOG, reader, str(log)]).returncode == 0
    tail = b"".join(b'{"event":"started","id":"item_%07d","ts":"2026-11-01T00:00:00.000Z",'
                    b'"host":"h","pid":1,"x":"%s"}\n' % (n, b"y" * 300)
                    for n in range(1, 300_000, 3) for _ in range(2))
    with open(log, "ab") as file:  # (past 64 MB, without a refresh)
        file.write(tail)
    assert len(tail) > 64 << 20
    index = {path: path.read_bytes() for path in tmp_path.glob("*-checkpoint")}
    printed = []
    for cores in (one_core, None):
        for path, data in index.items():
            path.write_bytes(data)
        result = subprocess.run([JOBLOG, "pending", str(log)], capture_output=True,
                                env=base_env(), preexec_fn=cores, timeout=120)
        assert result.returncode == 0, result.stderr
        printed.append(result.stdout)
    assert printed[0].count(b"\n") == 200_000
    assert printed[1] == printed[0]
