"""The data of the log workloads, P1 (jobs through the pipe filters) and the
start-up times of the commands; J1 is in ``joblogs``.

The data are generated here, deterministically, and cached under
tests/bench/results/cache/ (git-ignored; IATOOLS_BENCH_CACHE names another
directory, to share one between checkouts): a log as the real pipeline writes it
(``queued`` from ia-joblog skip, ``started`` and ``completed``/``failed``
from ia-fetch, with ia-resolve's ``size`` and ia-route's ``destdir``), and
the matching job stream.  Every output is checked: a fast wrong count fails.
"""

import dataclasses
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.bench import measure
from tests.bench.installed import installed_copy
from tests.bench.report import Row
from tests.bench.server import VENV_BIN
from tests.helpers import REPO, base_env, command

CACHE = Path(os.environ.get("IATOOLS_BENCH_CACHE")
             or REPO / "tests" / "bench" / "results" / "cache")
#: 2026-11-01T00:00:00Z; events are 20 ms apart from there.
EPOCH = 1_793_491_200
_WORDS = ("prelinger", "gov.archives.arc", "nasa_images", "bostonpubliclibrary", "librivox",
          "OTRR_Certified", "texts-microfilm", "wcd", "podcast_hour", "78rpm_disc",
          "tv-news", "cdbbsarchive", "softwarelibrary_msdos", "jstor_ejc", "usgs_maps")
_FAILURES = (("HTTP 503 Service Unavailable", True, 503),
             ("connection broken mid-body: ProtocolError", True, None),
             ("not found (HTTP 404)", False, 404),
             ("access denied (HTTP 403): the item is restricted or dark", False, 403))


@dataclass(frozen=True)
class LogShape:
    jobs: int
    completed: int
    failed: int

    @property
    def name(self):
        return f"v2-{self.jobs}-{self.completed}-{self.failed}"

    @property
    def permanent(self):
        """The failures that are not retryable, which skip drops."""
        return sum(not _FAILURES[k % len(_FAILURES)][1] for k in range(self.failed))

    @property
    def lines(self):
        """The lines ``generate`` writes: each job queued, and each one
        processed started, then completed or failed."""
        return self.jobs + 2 * (self.completed + self.failed)


def _identifier(index):
    """A unique identifier of 20 to 34 characters, archive.org style
    (a collection-like word, a serial, a pseudo-random tail)."""
    head = f"{_WORDS[index % len(_WORDS)]}_{index:07d}_"
    width = max(1, 20 + index * 7 % 15 - len(head))
    return f"{head}{index * 2654435761 % 16 ** width:0{width}x}"


def _size(index):
    return 100_000 + index * 1_103_515_245 % 2_000_000_000


class _Clock:
    """ISO timestamps, 20 ms apart, formatted cheaply."""

    def __init__(self):
        self.tick = 0
        self._second = None
        self._prefix = ""

    def next(self):
        self.tick += 1
        whole, ms = divmod(self.tick * 20, 1000)
        if whole != self._second:
            self._second = whole
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(EPOCH + whole))
        return f"{self._prefix}.{ms:03d}Z"


def generate(shape, log_path, jobs_path, block=1000, first=0):
    """Write the log and the job stream (every job, as ia-resolve gives it);
    ``first``: the number of the first job (the jobs of a log's tail)."""
    clock = _Clock()
    processed = first + shape.completed + shape.failed
    fail_every = (shape.completed + shape.failed) // shape.failed if shape.failed else 0
    with open(log_path, "w", encoding="utf-8") as log, \
            open(jobs_path, "w", encoding="utf-8") as jobs_out:
        for start in range(first, first + shape.jobs, block):
            batch = [(i, _identifier(i), _size(i))
                     for i in range(start, min(start + block, first + shape.jobs))]
            jobs_out.write("".join(f'{{"id":"{i}","size":{s}}}\n' for _, i, s in batch))
            pid = 4000 + start // 100_000
            log.write("".join(f'{{"event":"queued","id":"{i}","size":{s},"ts":"{clock.next()}",'
                              f'"host":"nas","pid":{pid}}}\n' for _, i, s in batch))
            lines = []
            for index, identifier, size in batch:
                if index >= processed:
                    continue
                job = (f'"id":"{identifier}","size":{size},"destdir":"/mnt/disk{index % 3}",'
                       f'"ts":"{clock.next()}","host":"nas","pid":{pid + 1}')
                lines.append(f'{{"event":"started",{job}}}\n')
                if fail_every and index % fail_every == fail_every - 1:
                    error, retryable, status = _FAILURES[index // fail_every % len(_FAILURES)]
                    extra = f',"http_status":{status}' if status else ""
                    lines.append(
                        f'{{"event":"failed",{job},"files":0,"files_skipped":0,"bytes":0,'
                        f'"seconds":1.5,"attempts":6,"error":"{error}",'
                        f'"retryable":{json.dumps(retryable)}{extra},'
                        f'"failed_file":"{identifier}.mp4"}}\n')
                else:
                    files = 3 + index % 20
                    lines.append(
                        f'{{"event":"completed",{job},"files":{files},"files_skipped":0,'
                        f'"bytes":{size},"seconds":{size / 40e6:.3f},"attempts":{files + 1}}}\n')
            log.write("".join(lines))


def cached_data(shape):
    """(log, jobs) paths, generated on first use; (seconds spent generating)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    log, jobs = CACHE / f"j1-log-{shape.name}.jsonl", CACHE / f"j1-jobs-{shape.name}.jsonl"
    if log.exists() and jobs.exists():
        return log, jobs, 0.0
    started = time.monotonic()
    temp_log, temp_jobs = log.with_suffix(".tmp"), jobs.with_suffix(".tmp")
    generate(shape, temp_log, temp_jobs)
    os.replace(temp_jobs, jobs)
    os.replace(temp_log, log)
    return log, jobs, time.monotonic() - started


def _env():
    env = base_env()
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    return env


def _tool(name):
    return str(VENV_BIN / name)


def _count_lines(path):
    count = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            count += chunk.count(b"\n")
    return count


def _run_to_file(argv, out_path, workdir, timeout, stdin_path=None):
    stdin = open(stdin_path, "rb") if stdin_path else None
    try:
        with open(out_path, "wb") as out:
            return measure.run(argv, _env(), timeout=timeout, cwd=workdir,
                               stdin=stdin or subprocess.DEVNULL, stdout=out,
                               stderr_path=workdir / "stderr.txt")
    finally:
        if stdin:
            stdin.close()


def _row(workload, contender, m, items, unit="jobs/s", note=""):
    trouble = (f"TIMED OUT after {m.wall:.0f} s" if m.timed_out
               else f"exit status {m.status}" if m.status else "")
    row = Row(workload, contender, wall=m.wall, items=items, cpu=m.cpu,
              peak_rss_mb=m.peak_rss_mb, status=m.status, unit=unit,
              note="; ".join(n for n in (note, trouble) if n))
    if m.status:
        row.extra["stderr_tail"] = m.stderr_tail
    return row


def _check(row, ok, what):
    row.verify = "ok" if ok else f"FAILED-VERIFY ({what})"


def _judge(row, target, passed):
    row.target = target
    row.met = bool(passed) and not row.failed and not row.status


def p1(workdir, quick, limit=60):
    """Jobs per second through ia-joblog skip (empty log) and ia-route, each
    alone, 10M jobs from a file to a file.  A stage still running after
    ``limit`` seconds is stopped, and its rate is that of the jobs it had
    passed on by then."""
    scale = 100 if quick else 1
    shape = LogShape(10_000_000 // scale, 7_000_000 // scale, 100_000 // scale)
    _, jobs, _ = cached_data(shape)
    empty_log = workdir / "p1-empty-log.jsonl"
    rows = [_stage_row(workdir, [command("ia-joblog"), "skip", str(empty_log)],
                       "ia-joblog skip (empty log)", jobs, shape.jobs, limit)]
    if rows[0].verify == "ok" and _count_lines(empty_log) != shape.jobs:
        rows[0].verify = "FAILED-VERIFY (not every job recorded as queued)"
    empty_log.unlink(missing_ok=True)
    disks = [workdir / "disk-a", workdir / "disk-b"]
    for disk in disks:
        disk.mkdir(exist_ok=True)
    argv = [command("ia-route"), "--no-disk-check"] + [a for d in disks
                                                      for a in ("-d", str(d))]
    rows.append(_stage_row(workdir, argv, "ia-route --no-disk-check", jobs, shape.jobs,
                           limit, note="2 disks"))
    return rows


def _stage_row(workdir, argv, label, jobs, count, limit, note=""):
    out = workdir / "p1-out.jsonl"
    m = _run_to_file(argv, out, workdir, limit, stdin_path=jobs)
    passed = _count_lines(out)
    out.unlink()
    stopped = m.timed_out
    if stopped:  # killed by us on purpose: not a failure of the stage
        m = dataclasses.replace(m, timed_out=False, status=0)
        note = "; ".join(filter(None, [note, f"stopped at {limit} s with {passed:,} of "
                                             f"{count:,} jobs through: rate over those"]))
    row = _row("P1", label, m, passed, note=note)
    if not stopped:
        _check(row, passed == count, f"{passed:,} of {count:,} jobs came out")
    _judge(row, ">= 1,000,000 jobs/s", row.items_per_s and row.items_per_s >= 1e6)
    return row


#: command -> its start-up target in seconds
STARTUP = {"ia-joblog": 0.060, "ia-route": 0.060, "ia-fetch": 0.200}


def startup(workdir, quick):
    """``--version`` of each command as a user's ``pip install`` installs
    it, median of several runs, with that Python's own start-up (``python
    -c pass``) as the floor; the same from the checkout's .venv in a note."""
    runs = 5 if quick else 11
    try:
        installed_bin = installed_copy(workdir)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        row = Row("S", "installed copy", runs=0, unit="s", verify=f"FAILED ({exc})"[:300])
        return [row]
    floor = _startup_row([installed_bin / "python", "-c", "pass"], "python -c pass",
                         runs, workdir)
    floor.anchor = True
    floor.note = "the floor: the interpreter alone"
    rows = [floor]
    for name, limit in STARTUP.items():
        row = _startup_row([installed_bin / name, "--version"], f"{name} --version", runs,
                           workdir)
        checkout = _startup_row([_tool(name), "--version"], "", runs, workdir)
        row.extra["over_floor_ms"] = round(1000 * (row.wall - floor.wall), 1)
        row.extra["checkout_ms"] = round(1000 * checkout.wall, 1)
        row.add_note(f"{checkout.wall * 1000:.0f} ms from the checkout's .venv")
        _judge(row, f"<= {limit * 1000:.0f} ms (got {row.wall * 1000:.0f} ms)",
               row.wall <= limit)
        rows.append(row)
    return rows


def _startup_row(argv, label, runs, workdir):
    argv = [str(a) for a in argv]
    results = [measure.run(argv, _env(), timeout=30, cwd=workdir) for _ in range(runs)]
    m = measure.median(results)
    row = _row("S", label, m, None, unit="s")
    row.runs = runs
    row.verify = "ok" if all(r.status == 0 for r in results) else "FAILED (exit status)"
    row.extra["walls_ms"] = sorted(round(r.wall * 1000, 1) for r in results)
    return row
