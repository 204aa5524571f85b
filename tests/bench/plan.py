"""F1: how long ia-fetch takes to plan one big item (``--dry-run --glob``).

Items of 100,000 files exist.  The library's ``get_file`` scans an item's
whole file list for each selected file, so selecting through it grows with
the square of the item's size (10.7 s of CPU for 20,000 files).  Each row
is the CPU of ``ia-fetch --dry-run --glob '*.jpg'`` on one item, whose
metadata comes from an emulator in this process (its CPU is not the
contender's); a one-file item is the floor (start-up, the session), and
the target is on the planning alone: the CPU above that floor.
``ia download --dry-run`` on the 20,000-file item is the anchor.
"""

from tests.bench import measure
from tests.bench.logs import _env, _judge, _row, _tool
from tests.emulator import Catalog, Emulator
from tests.emulator.realistic import add_big_item
from tests.helpers import command, jsonl_bytes

#: File counts of the items planned (--quick: a tenth).
SIZES = (20_000, 100_000)
#: CPU seconds above the floor allowed for planning a 20,000-file item.
TARGET_20K = 0.5
RUNS = 3


def f1(workdir, quick):
    sizes = [n // 10 if quick else n for n in SIZES]
    catalog = Catalog()
    add_big_item(catalog, "one-file", files=1)
    for files in sizes:
        add_big_item(catalog, f"big-{files}", files=files)
    with Emulator(catalog) as emulator:
        env = {**_env(), **emulator.client_env(workdir)}
        floor = _plan_row(workdir, env, "one-file", 1)
        floor.anchor, floor.note = True, "the floor: a one-file item"
        rows = [floor]
        for files in sizes:
            row = _plan_row(workdir, env, f"big-{files}", files)
            above = row.cpu - floor.cpu
            row.extra["plan_cpu_s"] = round(above, 3)
            row.add_note(f"{above:.2f} s CPU above the floor")
            if files == SIZES[0]:
                _judge(row, f"<= {TARGET_20K} s CPU over the floor (got {above:.2f} s)",
                       above <= TARGET_20K)
            rows.append(row)
        rows.append(_ia_row(workdir, env, f"big-{sizes[0]}", sizes[0]))
    return rows


def _plan_row(workdir, env, identifier, files):
    jobs = workdir / f"{identifier}.jsonl"
    jobs.write_bytes(jsonl_bytes([{"id": identifier}]))
    results = []
    for _ in range(RUNS):
        with open(jobs, "rb") as stdin:
            results.append(measure.run([command("ia-fetch"), "--dry-run", "--glob", "*.jpg",
                                        "-d", str(workdir)], env, timeout=300, cwd=workdir,
                                       stdin=stdin))
    m = measure.median(results)
    row = _row("F1", f"ia-fetch --dry-run, {files:,} files", m, 1, unit="items/s")
    row.runs, row.files = RUNS, files
    row.extra["cpus_s"] = sorted(round(r.cpu, 3) for r in results if r.cpu is not None)
    return row


def _ia_row(workdir, env, identifier, files):
    m = measure.run([_tool("ia"), "--insecure", "download", "--dry-run", "--glob", "*.jpg",
                     identifier], env, timeout=600, cwd=workdir)
    row = _row("F1", f"ia download --dry-run, {files:,} files", m, 1, unit="items/s")
    row.files, row.anchor = files, True
    return row
