"""W1-W5: downloads from the emulator by every contender, md5-verified.

Each workload starts its own emulator with its settings, runs the contenders
one after another (never at once: 2 cores), checks every file each one
fetched against the catalogue, and judges iatools' row against the target.
The slow anchors run on a subset (a rate, not a total, is compared; the
subset is in the row's note).
"""

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

from tests.bench import contenders, measure
from tests.bench.contenders import CURL, IA_PARALLEL, IA_SEQUENTIAL, IATOOLS, RCLONE
from tests.bench.report import MIB, Row
from tests.bench.server import EmulatorProcess, transfer_phase
from tests.bench.verify import expected_files, wrong_files
from tests.emulator.catalog import Item

KIB = 1 << 10


@dataclass
class Shape:
    """A workload's catalogue, connections and anchor subsets."""

    items: int
    files_per_item: int
    file_size: int
    jobs: int = 8
    ia_sequential_items: int = None  # None: all
    ia_parallel_items: int = None
    repeats: int = 1
    timeout: float = 300


@dataclass
class Contender:
    """A row to measure: ``command_for(dest)`` gives the shell command that
    fetches ``ids`` (only ``names`` of their files, when given) into dest;
    or ``execute(dest)`` runs it and returns the Measurement itself."""

    name: str
    ids: list
    command_for: object = None
    execute: object = None
    names: list = None
    anchor: bool = False
    note: str = ""


class DownloadSession:
    """One workload's emulator, catalogue and scratch space."""

    def __init__(self, workload, emulator, workdir, shape, unit):
        self.workload = workload
        self.emulator = emulator
        self.workdir = workdir
        self.shape = shape
        self.unit = unit
        self.catalog = emulator.catalog()
        self.env = emulator.client_env()
        self.https = emulator.https
        self.identifiers = sorted({f["id"] for f in self.catalog})
        self.rows = []

    def ids_file(self, count=None):
        ids = self.identifiers[:count]
        path = self.workdir / f"ids-{len(ids)}.txt"
        path.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
        return path, ids

    def measure(self, *contenders_, repeats=1):
        """Run each contender ``repeats`` times, round-robin (so that a noisy
        spell hits them alike), and add their rows: the median run of each,
        failing verification if any run left a file wrong or missing."""
        attempts = {c.name: [] for c in contenders_}
        for attempt in range(repeats):
            for contender in contenders_:
                attempts[contender.name].append(self._attempt(contender, attempt))
        rows = [self._row(c, attempts[c.name], repeats) for c in contenders_]
        self.rows += rows
        return rows

    def _attempt(self, contender, attempt):
        slug = f"{contender.name.split()[0].replace('+', '-')}-{len(self.rows)}-{attempt}"
        dest = self.workdir / slug
        dest.mkdir()
        self.emulator.reset_stats()
        if contender.execute is not None:
            result = contender.execute(dest)
        else:
            result = measure.run(contender.command_for(dest), self.env,
                                 timeout=self.shape.timeout, cwd=self.workdir,
                                 stderr_path=dest.with_suffix(".stderr"))
        phase = transfer_phase(self.emulator.stats())
        expected = expected_files(self.catalog, contender.ids, contender.names)
        wrong = len(wrong_files(dest, expected))
        events = _event_counts(events_path(dest))
        trouble = None
        if wrong or result.status or set(events) - {"started", "completed"}:
            trouble = {"run": attempt, "status": result.status, "wrong": wrong,
                       "events": events, "stderr_tail": result.stderr_tail}
        shutil.rmtree(dest)
        return result, phase, wrong, trouble

    def _row(self, contender, attempts, repeats):
        results = [a[0] for a in attempts]
        chosen = measure.median(results)
        _, phase, _, _ = attempts[results.index(chosen)]
        wrong = max(a[2] for a in attempts)
        expected = expected_files(self.catalog, contender.ids, contender.names)
        size = sum(f["size"] for f in self.catalog if f"{f['id']}/{f['name']}" in expected)
        row = Row(self.workload, contender.name, wall=chosen.wall, runs=repeats,
                  items=len(contender.ids), files=len(expected), bytes=size, cpu=chosen.cpu,
                  peak_rss_mb=chosen.peak_rss_mb, status=chosen.status, unit=self.unit,
                  anchor=contender.anchor,
                  verify=f"FAILED-VERIFY ({wrong} of {len(expected)} wrong or missing)"
                  if wrong else "ok")
        row.note = "; ".join(n for n in (self._subset_note(contender), contender.note,
                                         _trouble(chosen)) if n)
        row.extra.update(phase)
        if repeats > 1:
            row.extra["walls"] = [round(m.wall, 3) for m in results]
        troubles = [a[3] for a in attempts if a[3]]
        if troubles:
            row.extra["troubles"] = troubles
        return row

    def _subset_note(self, contender):
        parts = []
        if len(contender.ids) < len(self.identifiers):
            parts.append(f"{len(contender.ids)} of {len(self.identifiers)} items")
        if contender.names is not None:
            parts.append(f"{len(contender.names)} of {self.shape.files_per_item} files")
        return "subset: " + ", ".join(parts) if parts else ""

    def skipped(self, name, reason):
        self.rows.append(Row(self.workload, name, runs=0, unit=self.unit, anchor=True,
                             note=f"skipped: {reason}"))

    # -- the usual contenders -------------------------------------------------
    def iatools(self, name=IATOOLS, anchor=False):
        ids_file, ids = self.ids_file()
        return Contender(name, ids, lambda dest: contenders.iatools(
            ids_file, dest, self.shape.jobs, events_path(dest)), anchor=anchor,
            note=self.iatools_note())

    def iatools_note(self):
        elsewhere = contenders.iatools_elsewhere(self.env)
        return f"the iatools of {elsewhere}, not of this checkout" if elsewhere else ""

    def ia_sequential(self, note=""):
        ids_file, ids = self.ids_file(self.shape.ia_sequential_items)
        return Contender(IA_SEQUENTIAL, ids,
                         lambda dest: contenders.ia_sequential(ids_file, dest,
                                                               https=self.https),
                         anchor=True, note=note)

    def ia_parallel(self):
        ids_file, ids = self.ids_file(self.shape.ia_parallel_items)
        return Contender(IA_PARALLEL, ids, lambda dest: contenders.ia_parallel(
            ids_file, dest, self.shape.jobs, self.https), anchor=True,
            note=f"parallel -j {self.shape.jobs}")

    def curl(self):
        ids = self.identifiers

        def command_for(dest):
            config = dest.with_suffix(".curl")
            contenders.write_curl_config(config, self.catalog, dest, self.https)
            return contenders.curl(config, self.shape.jobs, self.https)

        return Contender(CURL, ids, command_for, anchor=True, note="no md5 check of its own")

    def rclone(self):
        ids_file, ids = self.ids_file()
        return Contender(RCLONE, ids, lambda dest: contenders.rclone(
            ids_file, dest, self.shape.jobs), anchor=True,
            note=f"internetarchive backend, {self.shape.jobs} items at once")

    def anchors(self, ia_note=""):
        """The anchors that can run here: ia (sequential), ia under GNU
        parallel, curl, and in https mode rclone; and rows saying why for
        those that cannot."""
        lineup, skipped = [self.ia_sequential(note=ia_note)], []
        missing = contenders.gnu_parallel_missing()
        if missing:
            skipped.append((IA_PARALLEL, missing))
        else:
            lineup.append(self.ia_parallel())
        lineup.append(self.curl())
        if self.https:
            missing = contenders.rclone_missing()
            if missing:
                skipped.append((RCLONE, missing))
            else:
                lineup.append(self.rclone())
        return lineup, skipped

    def standard_contenders(self, repeats=1):
        """iatools, then the anchors (``anchors``)."""
        lineup, skipped = self.anchors()
        iatools = self.measure(self.iatools(), *lineup, repeats=repeats)[0]
        for name, reason in skipped:
            self.skipped(name, reason)
        return iatools


def events_path(dest):
    """Where iatools' events go for a run into ``dest``."""
    return dest.with_suffix(".events.jsonl")


def _event_counts(path):
    """{kind: count} of the events in an events file or log (none: {})."""
    counts = {}
    try:
        with open(path, "rb") as lines:
            for line in lines:
                kind = json.loads(line).get("event")
                counts[kind] = counts.get(kind, 0) + 1
    except FileNotFoundError:
        pass
    return counts


def _trouble(m):
    if m.timed_out:
        return f"TIMED OUT after {m.wall:.0f} s"
    if m.status:
        return f"exit status {m.status}"
    return ""


def _shown(value):
    return "unknown" if value is None else f"{value:.2f}"


def _find(rows, contender):
    return next((r for r in rows if r.contender == contender and r.wall is not None), None)


def _judge(row, target, checks):
    """``checks``: (passed or None when not measurable) for each part."""
    row.target = target
    if row.failed:
        row.met = False
    elif any(c is None for c in checks):
        row.met = None
    else:
        row.met = all(checks)


def _judge_fill(row, ideal, share, cap):
    """Does the row fill the pipe?  Judged on the transfer phase the
    emulator saw (start-up excluded: with a pacer that makes one file take
    exactly size/cap, no client can reach 98% of ideal on wall time)."""
    phase = row.extra.get("transfer_mib_per_s")
    _judge(row, f"transfer phase >= {share * ideal:.1f} MiB/s ({share:.0%} of N × "
                f"{cap // MIB} MiB/s; got {phase or 0:.1f})",
           [phase >= share * ideal if phase else None])


# -- the workloads -------------------------------------------------------------


def w1(workdir, quick):
    """Many small items: 1000 × 3 × 10 KiB, 20 ms latency, N = 8, https
    mode (CONNECT and TLS per host, as on the real service)."""
    shape = (Shape(60, 3, 10 * KIB, ia_sequential_items=15, ia_parallel_items=15, timeout=120)
             if quick else
             Shape(1000, 3, 10 * KIB, ia_sequential_items=100, ia_parallel_items=100,
                   timeout=300))
    latency = 0.02
    with EmulatorProcess(workdir / "emulator", items=shape.items,
                         files_per_item=shape.files_per_item, file_size=shape.file_size,
                         latency=latency, https=True) as emulator:
        session = DownloadSession("W1", emulator, workdir, shape, "items/s")
        iatools = session.standard_contenders()
    requests_per_item = 1 + shape.files_per_item  # metadata, then each file from its node
    bound = shape.jobs / (requests_per_item * latency)
    _note_curl_share_of_bound(session, shape, latency)
    curl = _find(session.rows, CURL)
    cpu_per_item_ms = None if iatools.cpu is None else 1000 * iatools.cpu / iatools.items
    iatools.extra.update(latency_bound_items_per_s=round(bound, 2),
                         cpu_ms_per_item=cpu_per_item_ms and round(cpu_per_item_ms, 2))
    iatools.add_note(f"latency bound N/(4×latency) = {bound:.1f} items/s")
    _judge(iatools,
           f">= 1.3× curl items/s; <= 8 ms CPU/item (got {_shown(cpu_per_item_ms)})",
           [iatools.items_per_s >= 1.3 * curl.items_per_s if curl and not curl.failed else None,
            None if cpu_per_item_ms is None else cpu_per_item_ms <= 8])
    return session.rows


def _note_curl_share_of_bound(session, shape, latency):
    """How near curl, which makes no metadata request, comes to its own
    bound N / (2 × files × latency): what the emulator and the machine
    leave to any client."""
    curl = _find(session.rows, CURL)
    if curl is None or curl.failed:
        return
    bound = shape.jobs / (2 * shape.files_per_item * latency)
    curl.extra["share_of_own_bound"] = round(curl.items_per_s / bound, 3)
    curl.add_note(f"{curl.items_per_s / bound:.0%} of its own bound, {bound:.1f} items/s")


def _note_verified_floor(session, iatools):
    """The CPU floor of a download verified by md5 on this machine: the
    least CPU per GiB of the anchors, which receive and write but verify
    nothing, plus md5's; and the rate that floor allows on the cores this
    process may use, before the emulator takes its share."""
    md5 = _md5_cpu_s_per_gib()
    iatools.extra["md5_cpu_s_per_gib"] = round(md5, 3)
    anchors = [r for r in session.rows if r.anchor and not r.failed and r.cpu and r.bytes]
    if not anchors:
        return
    receive = min(r.cpu / (r.bytes / (1 << 30)) for r in anchors)
    floor = receive + md5
    cores = len(os.sched_getaffinity(0))
    ceiling = cores / floor * 1024
    iatools.extra.update(floor_cpu_s_per_gib=round(floor, 3),
                         ceiling_mib_per_s=round(ceiling))
    iatools.add_note(f"floor here: {floor:.2f} CPU s/GiB (the leanest anchor's {receive:.2f}, "
                     f"plus md5's {md5:.2f}), so at most {ceiling:.0f} MiB/s verified on "
                     f"{cores} cores")


def _md5_cpu_s_per_gib(mib=256):
    block = os.urandom(MIB)
    md5 = hashlib.md5()
    started = time.process_time()
    for _ in range(mib):
        md5.update(block)
    return (time.process_time() - started) * 1024 / mib


def w2(workdir, quick):
    """Fat items under a per-connection cap: 8 × 1 × 128 MiB at 16 MiB/s."""
    shape = (Shape(8, 1, 8 * MIB, ia_sequential_items=2, timeout=60) if quick else
             Shape(8, 1, 128 * MIB, ia_sequential_items=2, timeout=180))
    cap = 16 * MIB
    with EmulatorProcess(workdir / "emulator", items=shape.items,
                         files_per_item=shape.files_per_item, file_size=shape.file_size,
                         bandwidth=cap) as emulator:
        session = DownloadSession("W2", emulator, workdir, shape, "MiB/s")
        iatools = session.standard_contenders()
    _judge_fill(iatools, shape.jobs * cap / MIB, 0.98, cap)
    return session.rows


def w3(workdir, quick):
    """Uncapped: 4 × 512 MiB, N = 4, md5 verification included; 3 runs each."""
    shape = (Shape(4, 1, 64 * MIB, jobs=4, repeats=3, timeout=60) if quick else
             Shape(4, 1, 512 * MIB, jobs=4, repeats=3, timeout=180))
    with EmulatorProcess(workdir / "emulator", items=shape.items,
                         files_per_item=shape.files_per_item,
                         file_size=shape.file_size) as emulator:
        session = DownloadSession("W3", emulator, workdir, shape, "MiB/s")
        iatools = session.standard_contenders(repeats=shape.repeats)
    curl = _find(session.rows, CURL)
    cpu_per_gib = None if iatools.cpu is None else iatools.cpu / (iatools.bytes / (1 << 30))
    iatools.extra["cpu_s_per_gib"] = cpu_per_gib and round(cpu_per_gib, 3)
    _note_verified_floor(session, iatools)
    _judge(iatools, f">= 1.3× curl MiB/s; <= 2.5 CPU s/GiB (got {_shown(cpu_per_gib)})",
           [iatools.mib_per_s >= 1.3 * curl.mib_per_s if curl and not curl.failed else None,
            None if cpu_per_gib is None else cpu_per_gib <= 2.5])
    return session.rows


def w4(workdir, quick):
    """One big item: 1 × 64 × 8 MiB at 4 MiB/s per connection, N = 8."""
    shape = (Shape(1, 16, 1 * MIB, timeout=60) if quick else
             Shape(1, 64, 8 * MIB, timeout=180))
    cap = 4 * MIB
    sequential_files = 2 if quick else 8
    with EmulatorProcess(workdir / "emulator", items=shape.items,
                         files_per_item=shape.files_per_item, file_size=shape.file_size,
                         bandwidth=cap) as emulator:
        session = DownloadSession("W4", emulator, workdir, shape, "MiB/s")
        ids_file, ids = session.ids_file()
        names = sorted(f["name"] for f in session.catalog)
        subset = names[:sequential_files]
        lineup = [session.iatools(),
                  Contender(IA_SEQUENTIAL, ids, lambda dest: contenders.ia_sequential(
                      ids_file, dest, subset), names=subset, anchor=True)]
        missing = contenders.gnu_parallel_missing()
        if not missing:
            lineup.append(_w4_parallel(session, ids, names))
        lineup.append(session.curl())
        iatools = session.measure(*lineup)[0]
        if missing:
            session.skipped(IA_PARALLEL, missing)
    _judge_fill(iatools, shape.jobs * cap / MIB, 0.9, cap)
    return session.rows


def _w4_parallel(session, ids, names):
    """GNU parallel over the files of the one item (over items it would be
    the sequential row again)."""
    names_file = session.workdir / "names.txt"
    names_file.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    jobs = session.shape.jobs
    return Contender(IA_PARALLEL, ids, lambda dest: contenders.ia_parallel_files(
        ids[0], names_file, dest, jobs), anchor=True,
        note=f"parallel -j {jobs} over files: ia download ID FILE")


#: W5's faults: 5% 503 with Retry-After, 2% bodies cut by a reset, 2% corrupt.
W5_FAULTS = {"status_rate": 0.05, "status": 503, "retry_after": 1,
             "reset_rate": 0.02, "corrupt_rate": 0.02}
W5_MAX_ROUNDS = 5


def w5(workdir, quick):
    """W1's items at 300 with faults, https mode: time to a fully correct
    tree, re-runs of ``ia-joblog failed LOG | ia-fetch`` allowed; against
    iatools on the same items without faults, and rclone with the faults."""
    shape = (Shape(60, 3, 10 * KIB, ia_sequential_items=10, ia_parallel_items=15, timeout=120)
             if quick else
             Shape(300, 3, 10 * KIB, ia_sequential_items=20, ia_parallel_items=60,
                   timeout=300))
    with EmulatorProcess(workdir / "emulator", items=shape.items,
                         files_per_item=shape.files_per_item, file_size=shape.file_size,
                         latency=0.02, fault_seed=5, https=True) as emulator:
        session = DownloadSession("W5", emulator, workdir, shape, "items/s")
        clean = session.measure(session.iatools("iatools (no faults)", anchor=True))[0]
        emulator.configure(**W5_FAULTS)
        ids_file, ids = session.ids_file()
        rounds_used = []
        faulty = session.measure(Contender(IATOOLS, ids, execute=lambda dest: _until_correct(
            session, ids_file, dest, rounds_used), note=session.iatools_note()))[0]
        faulty.extra["rounds"] = rounds_used[-1]
        faulty.add_note(f"{rounds_used[-1]} round(s)")
        lineup, skipped = session.anchors(ia_note="one pass")
        session.measure(*lineup)
        for name, reason in skipped:
            session.skipped(name, reason)
    ratio = faulty.wall / clean.wall if not clean.failed else None
    faulty.extra["time_ratio_to_fault_free"] = ratio and round(ratio, 3)
    # rclone's time counts even when it left files wrong: it stopped there.
    rclone = next((r for r in session.rows if r.contender == RCLONE and r.wall), None)
    _judge(faulty, "every file correct in <= 2× the fault-free time"
           + (f" (got {ratio:.2f}×)" if ratio else "") + "; faster than rclone",
           [ratio <= 2 if ratio else None, faulty.wall < rclone.wall if rclone else None])
    return session.rows


def _until_correct(session, ids_file, dest, rounds_used):
    """The first pipeline, then ``ia-joblog failed | ia-fetch`` while the log
    names failed jobs (at most W5_MAX_ROUNDS in all)."""
    log = events_path(dest)
    jobs, env, timeout = session.shape.jobs, session.env, session.shape.timeout
    stderr = dest.with_suffix(".stderr")
    rounds = [measure.run(contenders.iatools(ids_file, dest, jobs, log=log), env,
                          timeout=timeout, stderr_path=stderr)]
    while len(rounds) < W5_MAX_ROUNDS and _failed_jobs(log, env):
        rounds.append(measure.run(contenders.iatools_retry_failed(log, dest, jobs), env,
                                  timeout=timeout, stderr_path=stderr))
    rounds_used.append(len(rounds))
    return measure.combine(rounds)


def _failed_jobs(log, env):
    result = subprocess.run([str(contenders.VENV_BIN / "ia-joblog"), "failed", str(log)],
                            env=env, capture_output=True, check=False)
    return result.stdout.strip() != b""


#: B1's bursts: archive.org itself (host, start, length), and the storage
#: nodes of the items fetched about then (start, length); starts are shares
#: of the fault-free run's time.  Each announces Retry-After for the rest of
#: its burst.
B1_API_BURST = ("archive.org", 0.2, 3.0)
B1_NODE_BURSTS = ((0.4, 4.0), (0.6, 4.0))
#: A request this soon after a refusal was on its way before it was read.
POLITE_GRACE = 0.1


def b1(workdir, quick):
    """Bursts: W1's items, https mode, while archive.org and two storage
    nodes each refuse everything for a few seconds.  Correct, polite (no
    request to a host in its pause after the second refusal), and fast:
    <= 1.3 × (the fault-free time + the time a host was down)."""
    shape = Shape(60, 3, 10 * KIB, timeout=120) if quick else \
        Shape(1000, 3, 10 * KIB, timeout=300)
    with EmulatorProcess(workdir / "emulator", items=shape.items,
                         files_per_item=shape.files_per_item, file_size=shape.file_size,
                         latency=0.02, https=True) as emulator:
        session = DownloadSession("B1", emulator, workdir, shape, "items/s")
        clean = session.measure(session.iatools("iatools (no bursts)", anchor=True))[0]
        bursts = _b1_bursts(session, clean.wall)
        ids_file, ids = session.ids_file()
        impolite = []
        bursty = session.measure(Contender(IATOOLS, ids, execute=lambda dest: _during_bursts(
            session, bursts, contenders.iatools(ids_file, dest, shape.jobs, events_path(dest)),
            impolite), note=session.iatools_note()))[0]
    down = _union_length([(start, start + length) for _, start, length in bursts])
    allowed = 1.3 * (clean.wall + down)
    bursty.extra.update(down_seconds=round(down, 2), impolite_requests=impolite[-1])
    bursty.add_note(f"hosts down {down:.1f} s in all; {impolite[-1]} requests to a host "
                    f"in its pause")
    _judge(bursty, f"correct, polite, <= 1.3 × (fault-free + down) = {allowed:.1f} s",
           [bursty.wall <= allowed and impolite[-1] == 0])
    return session.rows


def _b1_bursts(session, clean_wall):
    host, share, length = B1_API_BURST
    bursts = [(host, share * clean_wall, length)]
    for share, length in B1_NODE_BURSTS:
        identifier = session.identifiers[int(share * len(session.identifiers))]
        bursts.append((Item(identifier, {}).servers[0], share * clean_wall, length))
    return bursts


def _during_bursts(session, bursts, command, impolite):
    """Run ``command`` while ``bursts`` start on time; count in ``impolite``
    the requests that reached a host in its pause."""
    timers = [threading.Timer(start, session.emulator.burst, (host, length))
              for host, start, length in bursts]
    for timer in timers:
        timer.start()
    try:
        result = measure.run(command, session.env, timeout=session.shape.timeout)
    finally:
        for timer in timers:
            timer.cancel()
    impolite.append(len(_requests_in_pauses(session.emulator.stats()["requests"])))
    return result


def _requests_in_pauses(requests):
    """Requests that reached a host after it refused twice in a row (no
    answer between) within a Retry-After, before the second one was over."""
    by_host = {}
    for request in sorted(requests, key=lambda r: r["end"] or r["start"]):
        by_host.setdefault(request["host"], []).append(request)
    found = []
    for host_requests in by_host.values():
        previous = None  # the latest refusal, while no answer came after it
        for request in host_requests:
            retry_after = _announced(request)
            if retry_after is None:
                if request["status"] and request["status"] < 500:
                    previous = None
                continue
            if previous is not None and request["end"] < previous["end"] + _announced(previous):
                found += [r for r in host_requests
                          if request["end"] + POLITE_GRACE < r["start"]
                          < request["end"] + retry_after - POLITE_GRACE]
            previous = request
    return found


def _announced(request):
    """The Retry-After a refusal announced, or None for any other answer."""
    fault = request.get("fault") or ""
    if request["status"] in (429, 503) and ":" in fault:
        return float(fault.split(":")[1])
    return None


def _union_length(spans):
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        total += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return total


def l1(workdir, quick):
    """--bwlimit over 30 s: one item of 128 × 2 MiB, uncapped server, N = 8,
    --bwlimit 8M; the rate is read off the request log as in the test suite."""
    count, size, rate, jobs = (24, MIB // 2, 2 * MIB, 4) if quick else (128, 2 * MIB, 8 * MIB, 8)
    shape = Shape(1, count, size, jobs=jobs, timeout=120)
    with EmulatorProcess(workdir / "emulator", items=1, files_per_item=count,
                         file_size=size) as emulator:
        session = DownloadSession("L1", emulator, workdir, shape, "MiB/s")
        ids_file, ids = session.ids_file()
        starts = []
        limited = session.measure(Contender(
            f"iatools --bwlimit {rate // MIB}M", ids, execute=lambda dest: _bwlimited(
                session, ids_file, dest, rate, starts), note=session.iatools_note()))[0]
    # Request N + k starts once file k is paid for, whether the files go
    # in step (sharing the rate fairly) or staggered.
    window = starts[count - jobs] - starts[jobs]
    achieved = (count - 2 * jobs) * size / window
    limited.extra.update(bwlimit_mib_per_s=rate / MIB, window_seconds=round(window, 1),
                         achieved_mib_per_s=round(achieved / MIB, 3))
    _judge(limited, f"within ±5% of {rate // MIB} MiB/s over {window:.0f} s "
                    f"(got {achieved / MIB:.2f})",
           [0.95 * rate <= achieved <= 1.05 * rate])
    return session.rows


def _bwlimited(session, ids_file, dest, rate, starts):
    command = contenders.iatools(ids_file, dest, session.shape.jobs, events_path(dest))
    command = command.replace(" -q ", f" -q --bwlimit {rate} ")
    result = measure.run(command, session.env, timeout=session.shape.timeout)
    starts += sorted(r["start"] for r in session.emulator.stats()["requests"]
                     if r["kind"] == "storage")
    return result
