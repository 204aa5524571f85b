"""Scale-out through GNU parallel: one central log, jobs fanned out over ssh
to several hosts (each with its own disks), a host's connection dying mid-run,
and Ctrl-C to a pipeline of several local ia-fetch processes.

The hosts are throw-away sshd servers on 127.0.0.1 (tests/sshd.py), one per
host name, each giving its sessions IATOOLS_TEST_DESTDIR, the "disk" of that
machine.  The tests skip, saying why, where GNU parallel or sshd is missing.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections import Counter

import pytest

from tests.emulator import Catalog
from tests.helpers import base_env, read_jsonl, start_group
from tests.sshd import SshHosts, Unavailable
from tests.trees import catalog_md5s, partial_files, tree_md5s

HOSTS = ("host-a", "host-b")
#: What the remote side needs from the head's environment: the commands
#: (PATH, the checkout's bin/ first), the ia config and the proxy variables
#: through which the emulator is reached.
FORWARDED = ("PATH", "IA_CONFIG_FILE", "http_proxy", "HTTP_PROXY", "https_proxy",
             "HTTPS_PROXY", "no_proxy", "NO_PROXY")
#: Each host's two disks, under its IATOOLS_TEST_DESTDIR.
DISKS = ("d1", "d2")
#: One long-lived job per host (-j1 with --round-robin) fed blocks of whole
#: lines (--pipe), whose output comes back whole lines at a time, as it is
#: written (--line-buffer).  The tiny --block spreads a test-sized job list.
#: Each host routes its jobs over its own disks (directories of one
#: filesystem here, hence --no-disk-check).
FAN_OUT = ("parallel --pipe --round-robin -j1 --block 100 --line-buffer "
           "--ssh '{ssh}' -S {logins} --env {env} "
           "'ia-route --no-disk-check -d \"$IATOOLS_TEST_DESTDIR/d1\" "
           "-d \"$IATOOLS_TEST_DESTDIR/d2\" | ia-fetch -q -j 2'")
_STORAGE_PATH = re.compile(r"/\d+/items/([^/]+)/(.+)", re.DOTALL)


@pytest.fixture
def gnu_parallel():
    path = shutil.which("parallel")
    if not path:
        pytest.skip("GNU parallel is not installed (tests/setup-system.sh installs it as root)")
    version = subprocess.run([path, "--version"], capture_output=True, stdin=subprocess.DEVNULL)
    if b"GNU parallel" not in version.stdout:
        pytest.skip(f"{path} is not GNU parallel (moreutils' parallel?)")
    return path


@pytest.fixture
def ssh_hosts(tmp_path, gnu_parallel):
    """Two ssh hosts; returns (hosts, {host: its destdir})."""
    destdirs = {host: tmp_path / host for host in HOSTS}
    for destdir in destdirs.values():
        for disk in DISKS:
            (destdir / disk).mkdir(parents=True)
    hosts = SshHosts(tmp_path / "ssh", {host: {"IATOOLS_TEST_DESTDIR": str(destdir)}
                                        for host, destdir in destdirs.items()})
    try:
        hosts.start()
    except Unavailable as exc:
        pytest.skip(f"no throw-away sshd: {exc}")
    yield hosts, destdirs
    hosts.stop()


def pipeline_env(env, tmp_path):
    """parallel keeps its state in $PARALLEL_HOME: a fresh one per test."""
    return {**env, "PARALLEL_HOME": str(tmp_path / "parallel-home")}


def fan_out(source, log, hosts):
    fan = FAN_OUT.format(ssh=hosts.ssh_command, logins=",".join(f"1/{h}" for h in HOSTS),
                         env=",".join(FORWARDED))
    return f"{source} | ia-joblog skip {log} | {fan} | ia-joblog append {log}"


def status(log, env):
    result = subprocess.run(["ia-joblog", "status", "--json", str(log)], env=env,
                            capture_output=True, check=True)
    return json.loads(result.stdout)


def complete_transfers(emu):
    """{ID/NAME: how many times its whole (remaining) body was sent}: a 200
    of the whole file, or a 206 from the Range start to the end."""
    sizes = {f"{item.identifier}/{name}": f.size
             for item in emu.catalog.sorted_items() for name, f in item.files.items()}
    counts = Counter()
    for entry in emu.stats()["requests"]:
        match = _STORAGE_PATH.fullmatch(entry["path"] or "")
        if entry["kind"] != "storage" or not match or entry["status"] not in (200, 206):
            continue
        key = f"{match.group(1)}/{match.group(2)}"
        start = int(re.match(r"bytes=(\d+)-", entry["range"]).group(1)) if entry["range"] else 0
        if entry["bytes"] == sizes[key] - start:
            counts[key] += 1
    return counts


def final_files(destdir, catalog):
    """{ID/NAME: md5} of the files renamed into place (no temporaries), in
    ``destdir`` or on the disks under it."""
    wanted = catalog_md5s(catalog)
    roots = [destdir, *(destdir / disk for disk in DISKS if (destdir / disk).is_dir())]
    return {k: v for root in roots for k, v in tree_md5s(root).items() if k in wanted}


def on_host(event, destdir):
    """True when the event's destdir is one of the host's disks."""
    return event.get("destdir") in {str(destdir / disk) for disk in DISKS}


def test_fan_out_over_two_ssh_hosts_into_one_log(make_emulator, ssh_hosts, tmp_path):
    hosts, destdirs = ssh_hosts
    catalog = Catalog.generate(items=12, files_per_item=2, file_size=8 * 1024, mix="plain",
                               collection="demo")
    emu, env = make_emulator(catalog)
    log = tmp_path / "s.jsonl"
    result = subprocess.run(["bash", "-o", "pipefail", "-c",
                             fan_out("ia-resolve --search collection:demo", log, hosts)],
                            env=pipeline_env(env, tmp_path), capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()

    trees = {host: final_files(destdir, catalog) for host, destdir in destdirs.items()}
    assert all(trees.values()), f"one host got no item: {trees}"
    assert not set(trees["host-a"]) & set(trees["host-b"])
    assert {**trees["host-a"], **trees["host-b"]} == catalog_md5s(catalog)
    assert set(complete_transfers(emu).values()) == {1}
    assert emu.stats()["bytes_by_file"] == {k: 8 * 1024 for k in catalog_md5s(catalog)}

    events = read_jsonl(log)
    completed = [e for e in events if e["event"] == "completed"]
    assert sorted(e["id"] for e in completed) == sorted(i.identifier for i in catalog.sorted_items())
    for event in completed:  # each event says where its item went, and it is there
        host = next(h for h, d in destdirs.items() if on_host(event, d))
        assert any(k.startswith(event["id"] + "/") for k in trees[host])
    summary = status(log, env)
    assert (summary["total"], summary["completed"], summary["failed"], summary["pending"],
            summary["in_progress"]) == (12, 12, 0, 0, 0)


def ssh_processes(session, host):
    """The ssh clients of ``session`` (a process group leader) logged in to ``host``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            if os.path.basename(argv[0]) == b"ssh" and host.encode() in argv \
                    and os.getsid(int(pid)) == session:
                found.append(int(pid))
        except (OSError, IndexError):
            continue  # gone meanwhile
    return found


def wait_for(condition, timeout, what, run):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if run.poll() is not None:
            break
        time.sleep(0.05)
    if run.poll() is None:
        os.killpg(run.pid, signal.SIGKILL)
    _, stderr = run.communicate()
    pytest.fail(f"gave up waiting for {what}; the pipeline said: {stderr.decode()}")


def finish(run, timeout):
    """Wait for a pipeline started with start_group; kill it if it hangs."""
    try:
        return run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        _, stderr = run.communicate()
        pytest.fail(f"the pipeline did not end within {timeout} s: {stderr.decode()}")


def test_a_dead_connection_leaves_pending_jobs_that_finish_elsewhere(
        make_emulator, ssh_hosts, tmp_path):
    hosts, destdirs = ssh_hosts
    # 1.5 s per file.  The victim is the first host seen starting its second
    # pair of items after completing the first: its connection is killed
    # while those are in flight, with its first completions already logged.
    catalog = Catalog.generate(items=8, files_per_item=1, file_size=48 * 1024, mix="plain",
                               collection="demo")
    emu, env = make_emulator(catalog, bandwidth=32 * 1024)
    log = tmp_path / "s.jsonl"
    env = pipeline_env(env, tmp_path)
    run = start_group("set -o pipefail; " + fan_out("ia-resolve --search collection:demo", log,
                                                    hosts),
                      env=env, stderr=subprocess.PIPE)

    def busy_after_completing():
        events = read_jsonl(log) if log.exists() else []
        for host, destdir in destdirs.items():
            kinds = Counter(e["event"] for e in events if on_host(e, destdir))
            if kinds["completed"] and kinds["started"] > kinds["completed"]:
                return host
        return None

    wait_for(busy_after_completing, 60, "a host completing items and starting more", run)
    victim = busy_after_completing()
    assert len(read_jsonl(log)) < 8 + 2 * 8, "events must stream in while jobs still run"
    ssh_clients = ssh_processes(run.pid, victim)
    assert len(ssh_clients) == 1, ssh_clients
    os.kill(ssh_clients[0], signal.SIGKILL)
    _, stderr = finish(run, 60)
    assert run.returncode != 0, stderr.decode()  # parallel counts the dead job

    first = status(log, env)
    assert first["completed"] >= 2 and first["pending"] + first["in_progress"] >= 1, first
    assert partial_files(destdirs[victim]), f"{victim} was cut off mid-transfer"
    pending = subprocess.run(["ia-joblog", "pending", str(log)], env=env, capture_output=True,
                             check=True).stdout
    assert len(pending.splitlines()) == 8 - first["completed"]

    rerun = subprocess.run(["bash", "-o", "pipefail", "-c",
                            fan_out(f"ia-joblog pending {log}", log, hosts)],
                           env=env, capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr.decode()
    summary = status(log, env)
    assert (summary["total"], summary["completed"], summary["pending"],
            summary["in_progress"]) == (8, 8, 0, 0), summary
    placed = {**final_files(destdirs["host-a"], catalog),
              **final_files(destdirs["host-b"], catalog)}
    assert placed == catalog_md5s(catalog)
    # Nothing was downloaded whole twice; a Range resume of a partial is fine.
    assert complete_transfers(emu) == {k: 1 for k in catalog_md5s(catalog)}, stderr.decode()


def test_ctrl_c_to_local_fetches_through_parallel_loses_no_completed_event(
        make_emulator, gnu_parallel, tmp_path):
    """On one machine, --ungroup: each ia-fetch writes its events straight into
    the pipe to ia-joblog append (one write per event, so whole lines); on
    Ctrl-C parallel signals them (--termseq: TERM, then 2 s to stop
    gracefully) and ia-joblog append reads on until the last one exits."""
    catalog = Catalog.generate(items=30, files_per_item=1, file_size=32 * 1024, mix="plain",
                               collection="demo")
    emu, env = make_emulator(catalog, bandwidth=64 * 1024)
    destdir, log = tmp_path / "data", tmp_path / "s.jsonl"
    destdir.mkdir()
    fetches = (f"parallel --pipe --round-robin -j3 --block 100 --ungroup "
               f"--termseq TERM,2000,TERM,200,KILL,25 'ia-fetch -q -j 2 -d {destdir}'")
    run = start_group(f"ia-resolve --search collection:demo | ia-joblog skip {log} "
                      f"| {fetches} | ia-joblog append {log}",
                      env=pipeline_env(env, tmp_path), stderr=subprocess.PIPE)
    wait_for(lambda: log.exists() and log.read_bytes().count(b'"completed"') >= 6, 60,
             "the first completions", run)
    os.killpg(run.pid, signal.SIGINT)
    _, stderr = finish(run, 60)
    assert run.returncode == 130, stderr.decode()

    events = read_jsonl(log)
    completed = {e["id"] for e in events if e["event"] == "completed"}
    on_disk = {key.split("/")[0] for key in final_files(destdir, catalog)}
    assert on_disk == completed  # every item in place has its completed event
    assert len(completed) < 30, "interrupted before the end"
    kinds = Counter(e["event"] for e in events)
    assert kinds["failed"] >= 1, f"in-flight jobs are recorded as failed: {kinds}"
    assert status(log, env)["completed"] == len(completed)


def test_an_event_glued_to_a_dead_jobs_torn_line_is_kept(gnu_parallel, tmp_path):
    """GNU parallel prints the unterminated last line of a job that died
    (its ssh killed mid-line) without a newline, so the next line of another
    job is glued to it: ia-joblog append must keep that whole event."""
    log = tmp_path / "s.jsonl"
    event = '{"event":"completed","id":"nasa","bytes":1}'
    jobs = ("cat > /dev/null; if [ {#} = 1 ]; then printf '{\"event\":\"compl'; "
            f"else sleep 0.5; echo '{event}'; fi")
    result = subprocess.run(
        ["bash", "-c", f"printf 'a\\nb\\n' | parallel --pipe --line-buffer --round-robin -j2 "
                       f"--block 2 {shlex.quote(jobs)} | ia-joblog append {log}"],
        env=pipeline_env(base_env(), tmp_path), capture_output=True, timeout=60)
    assert result.returncode == 1  # the torn part is reported
    assert b"input line 1" in result.stderr
    assert [e["id"] for e in read_jsonl(log)] == ["nasa"]
