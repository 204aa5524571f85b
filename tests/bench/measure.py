"""Running one contender and measuring it: wall time, CPU and peak RSS.

A contender is one process, usually ``bash -c PIPELINE``.  ``os.wait4`` on it
gives the kernel's accounting for that process *and every descendant it
waited for* (every stage of a pipeline, every job GNU parallel ran): CPU is
their sum, ``ru_maxrss`` the peak of the largest single process.

The wait happens in a small launcher (``LAUNCHER``, Python without site),
not in the bench: a process keeps the peak RSS of the process it was
forked from, so a contender forked straight from the bench (which holds
catalogues) would report the bench's size.  The launcher's own few MB are
the floor of every peak RSS reported; its start-up is outside the wall time.
"""

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

#: ``LAUNCHER FD COMMAND...``: runs COMMAND, writes "wall user sys maxrss_kb"
#: to FD and exits with COMMAND's status (128 + N when signal N killed it).
LAUNCHER = """
import os, sys, time
report, command = int(sys.argv[1]), sys.argv[2:]
started = time.monotonic()
pid = os.posix_spawnp(command[0], command, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.monotonic() - started
os.write(report, f"{wall} {usage.ru_utime} {usage.ru_stime} {usage.ru_maxrss}".encode())
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


@dataclass
class Measurement:
    wall: float        # seconds
    cpu: float         # user + system seconds, descendants included (None: unknown)
    peak_rss_mb: float  # the largest process's peak resident set, MB (None: unknown)
    status: int        # exit status (128 + N: killed by signal N)
    timed_out: bool = False
    stderr_tail: str = ""


def run(command, env, *, timeout=None, cwd=None, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr_path=None):
    """Run ``command`` (an argv list, or a string for ``bash -c`` with
    pipefail) to completion and measure it.  On timeout the whole process
    group is killed and the measurement says so (wall: the timeout)."""
    argv = ["bash", "-o", "pipefail", "-c", command] if isinstance(command, str) else command
    error_file = open(stderr_path, "w+b") if stderr_path else subprocess.DEVNULL
    report_read, report_write = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-S", "-c", LAUNCHER, str(report_write), *argv], env=env,
            cwd=cwd, stdin=stdin, stdout=stdout, stderr=error_file, start_new_session=True,
            pass_fds=(report_write,))
        os.close(report_write)
        expired = threading.Event()
        timer = threading.Timer(timeout, _kill_group, (process.pid, expired)) if timeout else None
        if timer:
            timer.start()
        try:
            process.wait()
        except BaseException:  # Ctrl-C or SIGTERM of the bench: leave nothing running
            _kill_group(process.pid)
            raise
        finally:
            if timer:
                timer.cancel()
        _kill_group(process.pid)  # strays a pipeline left behind (none, normally)
        report = os.read(report_read, 4096).split()
        tail = _tail(error_file) if stderr_path else ""
    finally:
        os.close(report_read)
        if stderr_path:
            error_file.close()
    if len(report) != 4:  # killed (timeout) before it could report: CPU and RSS unknown
        return Measurement(timeout or 0.0, None, None, process.returncode, expired.is_set(),
                           tail)
    wall, user, system, maxrss_kb = map(float, report)
    return Measurement(wall, user + system, maxrss_kb * 1024 / 1e6, process.returncode,
                       expired.is_set(), tail)


def _kill_group(pgid, expired=None):
    if expired is not None:
        expired.set()
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(file, limit=600):
    file.seek(0, os.SEEK_END)
    size = file.tell()
    file.seek(max(0, size - limit))
    return file.read().decode("utf-8", "replace").strip()


def combine(rounds):
    """Several runs that together make one result (W5's re-runs): times and
    CPU add up, the peak is the highest, the status the first bad one."""
    return Measurement(
        wall=sum(m.wall for m in rounds), cpu=_total(m.cpu for m in rounds),
        peak_rss_mb=_total([m.peak_rss_mb for m in rounds], max),
        status=next((m.status for m in rounds if m.status), 0),
        timed_out=any(m.timed_out for m in rounds),
        stderr_tail=next((m.stderr_tail for m in rounds if m.status), rounds[-1].stderr_tail))


def _total(values, how=sum):
    """sum (or max) of values, None if any is unknown."""
    values = list(values)
    return None if None in values else how(values)


def median(measurements):
    """The run with the median wall time (a real run, not a blend); with an
    even count the slower middle one."""
    ordered = sorted(measurements, key=lambda m: m.wall)
    return ordered[len(ordered) // 2]
