"""iatools.base.forkedmap: the work shared by forked children, the results
in order, every failure told, no child left behind; and pending and
completed printing the same on one core as on two.

Each case runs in a fresh interpreter: the pytest process may have
threads, where ordered_map does not fork."""

import os
import subprocess
import textwrap

import pytest

from tests.helpers import PYTHON, REPO, base_env, command, run

JOBLOG = command("ia-joblog")
two_cores = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: no fork")


def in_fresh_python(code):
    """Run ``code`` (after the imports every case needs) in a new interpreter."""
    prelude = textwrap.dedent("""\
        import os, signal, sys, threading, time
        from iatools.base import errors
        from iatools.base.forkedmap import ordered_map
        def children_left():
            try:
                os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            return True
    """)
    return subprocess.run([PYTHON, "-c", prelude + textwrap.dedent(code)], capture_output=True,
                          text=True, env=base_env(PYTHONPATH=str(REPO)), timeout=60)


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
