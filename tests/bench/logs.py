"""J1 (a 10-million-job log), P1 (jobs through the pipe filters) and the
start-up times of the commands.

The data are generated here, deterministically, and cached under
tests/bench/results/cache/ (git-ignored): a log as the real pipeline writes it
(``queued`` from ia-joblog skip, ``started`` and ``completed``/``failed``
from ia-fetch, with ia-resolve's ``size`` and ia-route's ``destdir``), and
the matching job stream.  Every output is checked: a fast wrong count fails.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass

from tests.bench import measure
from tests.bench.installed import installed_copy
from tests.bench.report import Row
from tests.bench.server import VENV_BIN
from tests.helpers import REPO, base_env

CACHE = REPO / "tests" / "bench" / "results" / "cache"
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


#: Jobs queued, started and completed after the first reading of the J1
#: log (about 11 MB of events: minutes of a real run), before the second.
TAIL_JOBS = 20_000
#: Readings from a checkpoint are short and the machine noisy: the median of
#: this many is the row.  (A first reading leaves the checkpoint, so there
#: is only one of those.)
CHECKPOINT_RUNS = 3


def j1(workdir, quick, timeout=300):
    """ia-joblog status, skip (of every job) and pending on a big log: first
    readings, then readings from the checkpoints they left after a tail of
    new events (each from the same checkpoints); and, as the floor of any
    reader, grep -c and a bare Python loop over its lines."""
    scale = 100 if quick else 1
    shape = LogShape(10_000_000 // scale, 7_000_000 // scale, 100_000 // scale)
    log, jobs, generated = cached_data(shape)
    note = (f"{shape.jobs:,} jobs ({shape.completed:,} completed, {shape.failed:,} failed), "
            f"{log.stat().st_size / 1e9:.2f} GB log")
    if generated:
        note += f"; generated in {generated:.0f} s"
    size = log.stat().st_size
    _drop_checkpoints(log)
    try:
        first = "first reading"
        rows = [_j1_status(log, shape, workdir, timeout, first, note),
                _j1_skip(log, jobs, shape, workdir, timeout, first),
                _j1_pending(log, shape, workdir, timeout, first,
                            "completed keys from skip's checkpoint")]
        aside = _keep_checkpoints(log, workdir / "j1-checkpoints")
        tail = _append_tail(log, shape, LogShape(*[TAIL_JOBS // scale] * 2, 0), workdir)
        grown = LogShape(shape.jobs + tail.jobs, shape.completed + tail.completed,
                         shape.failed)
        later = "from its checkpoint"
        since = (f"{tail.jobs:,} more jobs logged since, "
                 f"{(log.stat().st_size - size) / 1e6:.0f} MB")
        restore = lambda: _restore_checkpoints(log, aside)  # noqa: E731 (each run alike)
        rows += [_j1_status(log, grown, workdir, timeout, later, since, restore),
                 _j1_skip(log, jobs, shape, workdir, timeout, later, since, restore),
                 _j1_pending(log, grown, workdir, timeout, later, since, restore)]
        rows += _j1_floors(log, grown, workdir, timeout)
    finally:
        os.truncate(log, size)  # keep the cached log as it was generated
        _drop_checkpoints(log)
    return rows


_CHECKPOINTS = ("status", "completed", "pending")


def _checkpoint(log, kind):
    return log.with_name(f"{log.name}.{kind}-checkpoint")


def _keep_checkpoints(log, aside):
    """Copy the log's checkpoints into the directory ``aside``."""
    aside.mkdir(exist_ok=True)
    for kind in _CHECKPOINTS:
        if _checkpoint(log, kind).exists():
            shutil.copyfile(_checkpoint(log, kind), aside / kind)
    return aside


def _restore_checkpoints(log, aside):
    """Put back the checkpoints ``_keep_checkpoints`` kept (a reading saves
    newer ones, and the next must start from the same)."""
    for kind in _CHECKPOINTS:
        if (aside / kind).exists():
            shutil.copyfile(aside / kind, _checkpoint(log, kind))
        else:
            _checkpoint(log, kind).unlink(missing_ok=True)


def _drop_checkpoints(log):
    for kind in _CHECKPOINTS:
        _checkpoint(log, kind).unlink(missing_ok=True)


def _append_tail(log, shape, tail, workdir):
    tail_log, tail_jobs = workdir / "j1-tail.jsonl", workdir / "j1-tail-jobs.jsonl"
    generate(tail, tail_log, tail_jobs, first=shape.jobs)
    with open(log, "ab") as out:
        out.write(tail_log.read_bytes())
    tail_log.unlink()
    tail_jobs.unlink()
    return tail


def _readings(reading, run_once, before=None):
    """Run ``run_once()``, which returns (Measurement, None or what was
    wrong in the output): once for a first reading, CHECKPOINT_RUNS times
    from a checkpoint, each after ``before()``.  Returns the median run,
    the number of runs, and the first thing wrong, if any."""
    runs = 1 if reading == "first reading" else CHECKPOINT_RUNS
    results = []
    for _ in range(runs):
        if before:
            before()
        results.append(run_once())
    chosen = measure.median([m for m, _ in results])
    wrong = next((seen for _, seen in results if seen is not None), None)
    return chosen, runs, wrong


def _reading_row(label, reading, run_once, before, shape, note):
    m, runs, wrong = _readings(reading, run_once, before)
    row = _row("J1", f"ia-joblog {label} ({reading})", m, shape.jobs, note=note)
    row.runs = runs
    _check(row, wrong is None, wrong)
    return row, m


def _j1_status(log, shape, workdir, timeout, reading, note="", before=None):
    out = workdir / "j1-out.jsonl"

    def run_once():
        m = _run_to_file([_tool("ia-joblog"), "status", "--json", str(log)], out, workdir,
                         timeout)
        summary = _first_json(out)
        out.unlink()
        right = (summary.get("total") == shape.jobs and summary.get("completed") ==
                 shape.completed and summary.get("failed") == shape.failed)
        return m, None if right else f"counts {_counts(summary)}"

    row, m = _reading_row("status", reading, run_once, before, shape, note)
    _judge(row, "<= 10 s and <= 200 MB",
           m.wall <= 10 and m.peak_rss_mb is not None and m.peak_rss_mb <= 200)
    return row


def _j1_skip(log, jobs, shape, workdir, timeout, reading, note="", before=None):
    """``skip`` of the ``shape.jobs`` jobs of the job file (the tail's are
    not among them)."""
    out = workdir / "j1-out.jsonl"
    size = log.stat().st_size

    def run_once():
        try:
            m = _run_to_file([_tool("ia-joblog"), "skip", str(log)], out, workdir, timeout,
                             stdin_path=jobs)
        finally:
            os.truncate(log, size)  # skip appended its queued events: the next reading is alike
        passed = _count_lines(out)
        out.unlink()
        expected = shape.jobs - shape.completed - shape.permanent
        return m, None if passed == expected else f"passed {passed:,} jobs"

    note = "; ".join(filter(None, [f"all {shape.jobs:,} jobs in", note]))
    row, m = _reading_row("skip", reading, run_once, before, shape, note)
    per_job = None if m.peak_rss_mb is None else m.peak_rss_mb * 1e6 / shape.completed
    row.extra["rss_bytes_per_completed_job"] = per_job and round(per_job, 1)
    _judge(row, "<= 15 s and <= 64 B RSS per completed job (got "
                f"{'unknown' if per_job is None else f'{per_job:.0f}'})",
           m.wall <= 15 and per_job is not None and per_job <= 64)
    return row


def _j1_pending(log, shape, workdir, timeout, reading, note="", before=None):
    out = workdir / "j1-out.jsonl"

    def run_once():
        m = _run_to_file([_tool("ia-joblog"), "pending", str(log)], out, workdir, timeout)
        pending = _count_lines(out)
        out.unlink()
        return m, (None if pending == shape.jobs - shape.completed
                   else f"printed {pending:,} jobs")

    row, m = _reading_row("pending", reading, run_once, before, shape, note)
    _judge(row, "<= 15 s", m.wall <= 15)
    return row


#: A bare Python pass over the log's lines: the floor of any reader in Python.
_LINE_LOOP = "import sys\nn = 0\nfor line in open(sys.argv[1], 'rb'):\n    n += 1\nprint(n)"


def _j1_floors(log, shape, workdir, timeout):
    """Anchors: counting the completed events with grep, and the lines with
    a Python loop that looks at none of them: what any reader, in C or in
    Python, needs at the least."""
    lines = shape.lines
    rows = []
    for label, argv, expected in (
            ("grep -c completed (floor)", ["grep", "-c", '"event":"completed"', str(log)],
             shape.completed),
            ("python line loop (floor)", [str(VENV_BIN / "python"), "-c", _LINE_LOOP, str(log)],
             lines)):
        out = workdir / "j1-out.jsonl"
        m = _run_to_file(argv, out, workdir, timeout)
        printed = out.read_text(encoding="utf-8").strip()
        out.unlink()
        row = _row("J1", label, m, shape.jobs, note=f"{lines:,} lines")
        row.anchor = True
        _check(row, printed == str(expected), f"printed {printed!r}, expected {expected}")
        rows.append(row)
    return rows


def _first_json(path):
    try:
        return json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    except (IndexError, ValueError):
        return {}


def _counts(summary):
    return {k: summary.get(k) for k in ("total", "completed", "failed")}


def p1(workdir, quick, limit=60):
    """Jobs per second through ia-joblog skip (empty log) and ia-route, each
    alone, 10M jobs from a file to a file.  A stage still running after
    ``limit`` seconds is stopped, and its rate is that of the jobs it had
    passed on by then."""
    scale = 100 if quick else 1
    shape = LogShape(10_000_000 // scale, 7_000_000 // scale, 100_000 // scale)
    _, jobs, _ = cached_data(shape)
    empty_log = workdir / "p1-empty-log.jsonl"
    rows = [_stage_row(workdir, [_tool("ia-joblog"), "skip", str(empty_log)],
                       "ia-joblog skip (empty log)", jobs, shape.jobs, limit)]
    if rows[0].verify == "ok" and _count_lines(empty_log) != shape.jobs:
        rows[0].verify = "FAILED-VERIFY (not every job recorded as queued)"
    empty_log.unlink(missing_ok=True)
    disks = [workdir / "disk-a", workdir / "disk-b"]
    for disk in disks:
        disk.mkdir(exist_ok=True)
    argv = [_tool("ia-route"), "--no-disk-check"] + [a for d in disks
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
