"""The example of the README's "Python API" section, run as it is written:
against the emulator (a collection "prelinger"), reached through the
environment a user's program gets (IA_CONFIG_FILE, proxy variables), in a
directory where mirror-a and mirror-b are two filesystems; run twice, the
second time with nothing left to do."""

import contextlib
import io
import os
import re

from tests.emulator import Catalog
from tests.helpers import REPO
from tests.torture import tmpfs
from tests.trees import catalog_md5s, tree_md5s


def readme_example():
    section = (REPO / "README.md").read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL)[1]


def run_example(code):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    return printed.getvalue()


def test_the_readme_example_mirrors_the_collection_and_resumes(make_emulator, monkeypatch,
                                                                tmp_path):
    catalog = Catalog.generate(items=6, files_per_item=2, file_size=8 * 1024,
                               mix="realistic", collection="prelinger")
    emu, env = make_emulator(catalog)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    code = readme_example()
    with contextlib.ExitStack() as mounts:
        disks = [mounts.enter_context(tmpfs(tmp_path / name, 4 << 30))
                 for name in ("mirror-a", "mirror-b")]
        assert run_example(code) == f"{len(catalog.items)} items completed\n"
        trees = {}
        for disk in disks:
            trees.update(tree_md5s(disk))
        assert trees == catalog_md5s(catalog)
        assert os.listdir(disks[0]) and os.listdir(disks[1])
        before = len((tmp_path / "s.jsonl").read_bytes().splitlines())
        assert run_example(code) == f"{len(catalog.items)} items completed\n"
        assert len((tmp_path / "s.jsonl").read_bytes().splitlines()) == before
