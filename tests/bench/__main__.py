"""``python -m tests.bench [WORKLOAD ...] [--quick]`` (``make bench``): run the
workloads, print the Markdown table, write the rows as JSONL."""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from tests.bench import audit, downloads, joblogs, logs, plan, report
from tests.helpers import REPO

WORKLOADS = {
    "W1": downloads.w1, "W2": downloads.w2, "W3": downloads.w3, "W4": downloads.w4,
    "W5": downloads.w5, "B1": downloads.b1, "L1": downloads.l1, "V1": audit.v1, "J1": joblogs.j1, "P1": logs.p1,
    "S": logs.startup, "F1": plan.f1,
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench", description=__doc__.split("\n\n")[0],
        epilog="Workloads: W1 many small items, W2 fat items under a per-connection cap, "
               "W3 uncapped, W4 one big item, W5 faults, B1 bursts, L1 --bwlimit, V1 ia-verify against "
               "md5sum, J1 a 10-million-job log, P1 pipe overhead, S start-up times, "
               "F1 planning a 100,000-file item.  See tests/bench/__init__.py.")
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                        help=f"which to run: {' '.join(WORKLOADS)} (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: a smoke run of the harness, not a measurement")
    parser.add_argument("--results", type=Path, default=REPO / "tests" / "bench" / "results",
                        metavar="DIR",
                        help="where the JSONL and the table go (default: tests/bench/results/)")
    parser.add_argument("--workdir", type=Path, metavar="DIR",
                        help="scratch space for downloads (default: a directory under "
                             "/dev/shm when it exists, so disks add no noise)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the emulators and contenders (each in
    # a session of its own) are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    chosen = [w.upper() for w in args.workloads] or list(WORKLOADS)
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        build_parser().error(f"unknown workload(s) {' '.join(unknown)}; "
                             f"choose from {' '.join(WORKLOADS)}")
    args.results.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}"
    jsonl_path = args.results / f"{stem}.jsonl"
    info = report.run_info(args.quick)
    started = time.monotonic()
    rows = []
    for name in chosen:
        workload_rows = _run_workload(name, args)
        report.add_ratios(workload_rows)
        report.write_jsonl(workload_rows, jsonl_path, info)
        rows += workload_rows
        print(report.table(workload_rows), file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    text = _summary(rows, elapsed, args.quick, jsonl_path)
    (args.results / f"{stem}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


def _run_workload(name, args):
    print(f"== {name} ({time.strftime('%H:%M:%S')}, load {os.getloadavg()[0]:.1f})",
          file=sys.stderr, flush=True)
    root = args.workdir or (Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    workdir = Path(tempfile.mkdtemp(prefix=f"iatools-bench-{name}-", dir=root))
    started = time.monotonic()
    try:
        rows = WORKLOADS[name](workdir, args.quick)
    except Exception as exc:  # one broken workload must not lose the others' results
        traceback.print_exc()
        rows = [report.Row(name, "(bench)", runs=0, met=False,
                           note=f"bench error: {type(exc).__name__}: {exc}")]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for row in rows:
        row.extra.setdefault("workload_seconds", round(time.monotonic() - started, 1))
    return rows


def _summary(rows, elapsed, quick, jsonl_path):
    judged = [r for r in rows if r.target]
    met = sum(1 for r in judged if r.met)
    lines = [
        f"# iatools bench{' (--quick: sizes reduced, targets not meaningful)' if quick else ''}",
        "",
        f"{len(rows)} rows in {elapsed / 60:.1f} min on {os.cpu_count()} cores "
        f"(load {os.getloadavg()[0]:.1f}); targets met: {met} of {len(judged)}. "
        "Shared, noisy machine: compare the ratios (same run), not absolute times. "
        "Rates of subset rows are rates over their subset. CPU is user + system of "
        "every process of the contender; peak RSS is the largest single process. "
        "Contenders: iatools = `ia-resolve --itemlist | ia-fetch -j N`; "
        "ia = `ia download --itemlist` (sequential); "
        "ia+parallel = `parallel -j N ia download {}`; "
        "curl = one `curl --parallel --parallel-max N -L` (no checksum); "
        "rclone = `parallel -j N rclone copy :internetarchive:{}` (https mode rows).",
        "",
        report.table(rows),
        "",
        f"JSONL: {jsonl_path}",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
