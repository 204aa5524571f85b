"""Fixtures: an archive.org emulator per test, and the environment a user's
install would have to reach it (IA_CONFIG_FILE and proxy variables)."""

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
