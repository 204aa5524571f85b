"""Torture: with S3 keys in the ia config, no event, log line, error
message or progress display (a real terminal) ever shows them, whatever
goes wrong."""

import os
import threading

import pytest

from tests.emulator import ACCESS_KEY, SECRET_KEY, Catalog
from tests.helpers import command, run
from tests.torture import Pipeline, full_pipeline

SECRETS = (ACCESS_KEY.encode(), SECRET_KEY.encode())


def assert_no_secret(where, data):
    for secret in SECRETS:
        assert secret not in data, f"{where} shows the key {secret.decode()!r}"


class Terminal:
    """A pseudo-terminal whose output is collected until every writer is gone."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        self.output = bytearray()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        while True:
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:  # EIO: the last writer closed it
                return
            if not data:
                return
            self.output += data

    def close_ours(self):
        os.close(self.slave)

    def collect(self):
        self._thread.join(10)
        os.close(self.master)
        return bytes(self.output)


def test_no_output_of_a_troubled_pipeline_shows_the_keys(make_emulator, tmp_path):
    catalog = Catalog.generate(items=6, files_per_item=2, file_size=256 * 1024)
    catalog.add_special_items(collection="demo")
    emu, env = make_emulator(catalog, bandwidth=2 << 20, status_rate=0.1, status=503,
                             reset_rate=0.05, corrupt_rate=0.05, fault_seed=3,
                             fault_kinds=("metadata", "redirect", "storage"))
    emu.inject("/services/search/v1/scrape", ["503"])
    disks = [tmp_path / "a", tmp_path / "b"]
    for disk in disks:
        disk.mkdir()
    log = tmp_path / "s.jsonl"
    stages = full_pipeline(log, disks, ["--search", "collection:demo", "-v"],
                           fetch_args=["-v", "-j", "4", "--retries", "3", "--timeout", "2"],
                           append="tee")
    terminal = Terminal()
    with open(tmp_path / "tee.out", "wb") as events:
        pipeline = Pipeline(stages, env, tmp_path / "run", stdout=events,
                            stderr_tty=terminal.slave)
    terminal.close_ours()
    statuses = pipeline.wait(timeout=120)
    progress = terminal.collect()
    assert statuses["fetch"] == 1, statuses  # the special items fail
    assert b"\x1b[" in progress and b"ia-fetch:" in progress, "no live progress was drawn"
    assert any(r["auth"] for r in emu.stats()["requests"]), "the keys were never used"
    restricted = [r for r in emu.stats()["requests"] if "special-restricted" in r["path"]]
    assert any(r["status"] == 200 for r in restricted), "the keys did not open the restricted item"
    assert_no_secret("the progress display", progress)
    for stage, text in pipeline.stderr().items():
        assert_no_secret(f"{stage}'s stderr", text.encode())
    assert_no_secret("the log", log.read_bytes())
    assert_no_secret("the events", (tmp_path / "tee.out").read_bytes())
    for argv in (["status", str(log)], ["status", "--json", str(log)], ["failed", str(log)],
                 ["pending", str(log)], ["locks", *map(str, disks)]):
        result = run([command("ia-joblog"), *argv], env=env)
        assert_no_secret(f"ia-joblog {argv[0]}", result.stdout + result.stderr)


@pytest.mark.parametrize("breakage", [
    "the keys before any section",
    "a line without a value",
    "a duplicate key",
])
def test_a_broken_config_is_refused_without_quoting_the_keys(make_emulator, tmp_path, breakage):
    emu, env = make_emulator()
    config = tmp_path / "ia.ini"
    good = (f"[general]\nscreenname = u\nsecure = false\n"
            f"[s3]\naccess = {ACCESS_KEY}\nsecret = {SECRET_KEY}\n")
    config.write_text({
        "the keys before any section": f"{ACCESS_KEY}:{SECRET_KEY}\n" + good,
        "a line without a value": good + f"{SECRET_KEY}\n",
        "a duplicate key": good + f"secret = {SECRET_KEY}\n",
    }[breakage])
    env = {**env, "IA_CONFIG_FILE": str(config)}
    for argv in (["ia-fetch", "-d", str(tmp_path)], ["ia-resolve", "--search", "x"]):
        result = run([command(argv[0]), *argv[1:]], input=b'{"id": "demo-0001"}\n', env=env)
        assert result.returncode == 2, (argv, result.stderr)
        assert b"configuration" in result.stderr
        assert_no_secret(f"{argv[0]}'s error", result.stdout + result.stderr)
