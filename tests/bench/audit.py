"""V1: auditing a mirror on disk.  ``ia-verify`` (fresh metadata, then the
md5 of every file) against ``md5sum`` of the same files under ``xargs -P 2``,
over W2's tree (8 items × 128 MiB), in the same run, round-robin, median of
three.  The tree is built first by ia-fetch, unmeasured, under the bench's
workdir (/dev/shm by default: both read from memory, so this compares the
hashing, the part a disk cannot hide)."""

from tests.bench import contenders, measure
from tests.bench.downloads import Shape, _judge
from tests.bench.report import MIB, Row
from tests.bench.server import EmulatorProcess
from tests.bench.verify import expected_files, wrong_files

REPEATS = 3
MD5SUM = "md5sum (xargs -P 2)"
IA_VERIFY = "iatools (ia-verify)"


def v1(workdir, quick):
    shape = Shape(8, 1, 8 * MIB if quick else 128 * MIB, jobs=2, timeout=180)
    with EmulatorProcess(workdir / "emulator", items=shape.items,
                         files_per_item=shape.files_per_item,
                         file_size=shape.file_size) as emulator:
        env = emulator.client_env()
        catalog = emulator.catalog()
        tree, ids_file, size = _build_tree(workdir, env, catalog, shape)
        commands = {IA_VERIFY: contenders.ia_verify(ids_file, tree, 2, workdir / "events.jsonl"),
                    MD5SUM: contenders.md5sum_parallel(_files_list(tree, workdir), 2)}
        runs = {name: [] for name in commands}
        for _ in range(REPEATS):
            for name, command in commands.items():
                runs[name].append(measure.run(command, env, timeout=shape.timeout, cwd=workdir))
    rows = [_row(name, measure.median(results), shape, size)
            for name, results in runs.items()]
    iatools, md5sum = rows
    iatools.anchor, md5sum.anchor = False, True
    rate = iatools.mib_per_s and md5sum.mib_per_s and iatools.mib_per_s / md5sum.mib_per_s
    _judge(iatools, f">= 90% of md5sum's MiB/s, same run (got {rate or 0:.0%})",
           [rate >= 0.9 if rate else None])
    return rows


def _build_tree(workdir, env, catalog, shape):
    tree = workdir / "tree"
    tree.mkdir()
    ids_file = workdir / "ids.txt"
    identifiers = sorted({f["id"] for f in catalog})
    ids_file.write_text("".join(f"{i}\n" for i in identifiers), encoding="utf-8")
    built = measure.run(contenders.iatools(ids_file, tree, 8), env, timeout=shape.timeout)
    expected = expected_files(catalog, identifiers)
    if built.status or wrong_files(tree, expected):
        raise RuntimeError(f"V1: the tree to audit was not built (status {built.status}): "
                           f"{built.stderr_tail}")
    return tree, ids_file, sum(f["size"] for f in catalog)


def _files_list(tree, workdir):
    path = workdir / "files.list"
    path.write_bytes(b"".join(bytes(p) + b"\0" for p in sorted(tree.rglob("*")) if p.is_file()))
    return path


def _row(name, result, shape, size):
    row = Row("V1", name, wall=result.wall, runs=REPEATS, items=shape.items,
              files=shape.items * shape.files_per_item, bytes=size, cpu=result.cpu,
              peak_rss_mb=result.peak_rss_mb, status=result.status, unit="MiB/s",
              verify="ok" if result.status == 0 else f"FAILED-VERIFY (exit status "
                                                     f"{result.status})")
    if result.cpu is not None:
        row.extra["cpu_s_per_gib"] = round(result.cpu / (size / (1 << 30)), 3)
    return row
