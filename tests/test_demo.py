"""The README's main job (`make demo`, tests/demo.sh) works as it says."""

import re
import subprocess

from tests.helpers import PYTHON, REPO, base_env


def test_the_demo_fetches_all_40_items_then_finds_nothing_to_do(tmp_path):
    demo = tmp_path / "demo"
    result = subprocess.run([str(REPO / "tests" / "demo.sh")], capture_output=True,
                            env=base_env(IATOOLS_DEMO_DIR=str(demo), PYTHON=PYTHON),
                            timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    first, second = result.stdout.decode().split("== second run")
    for status in (first, second):
        assert re.search(r"^total +40$", status, re.M), status
        assert re.search(r"^completed +40 \(100\.0%\)$", status, re.M), status
        assert re.search(r"^pending +0$", status, re.M), status
    events = (demo / "s.jsonl").read_text().splitlines()
    assert sum('"event":"completed"' in e for e in events) == 40  # none in the second run
    disks = [demo / "disk-a", demo / "disk-b"]
    assert all(any(disk.iterdir()) for disk in disks), "both disks get items"
    assert not list(demo.glob("disk-*/**/.*.iatools-part"))
