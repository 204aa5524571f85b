"""Fixtures: an archive.org emulator per test, and the environment a user's
install would have to reach it (IA_CONFIG_FILE and proxy variables)."""

import hashlib
import os
from pathlib import Path

import pytest

from tests.emulator import Catalog, Emulator
from tests.helpers import base_env


@pytest.fixture
def make_emulator(tmp_path_factory):
    """Start emulators on demand: ``emu, env = make_emulator(catalog, **settings)``."""
    started = []

    def start(catalog=None, mode="http", credentials=True, **settings):
        catalog = catalog or Catalog.generate(items=5, files_per_item=2, file_size=10 * 1024,
                                              mix="realistic", collection="demo")
        emulator = Emulator(catalog, **settings).start()
        started.append(emulator)
        client = tmp_path_factory.mktemp("client")  # apart from the test's tmp_path
        return emulator, base_env(**emulator.client_env(client, mode, credentials))

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(make_emulator):
    """The default emulator (5 realistic items in collection demo) and its env."""
    return make_emulator()


def tree_md5s(root):
    """{relative path: md5} of every regular file below ``root``."""
    root = Path(root)
    result = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            result[str(path.relative_to(root))] = hashlib.md5(path.read_bytes()).hexdigest()
    return result


def catalog_md5s(catalog, identifiers=None, include=lambda name: True):
    """{IDENTIFIER/NAME: md5} of what the emulator serves."""
    wanted = set(identifiers) if identifiers is not None else None
    return {f"{item.identifier}/{name}": f.md5()
            for item in catalog.sorted_items()
            if wanted is None or item.identifier in wanted
            for name, f in item.files.items() if include(name)}


def partial_files(root):
    """Temporaries ia-fetch leaves for resumption."""
    return [p for p in Path(root).rglob("*.iatools-part")]


def mtimes(root):
    root = Path(root)
    return {str(p.relative_to(root)): int(os.stat(p).st_mtime)
            for p in root.rglob("*") if p.is_file()}
