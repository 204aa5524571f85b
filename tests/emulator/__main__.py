"""Run the emulator as a process (from the repository root):

    python -m tests.emulator serve --state-dir DIR [--items 20 --mix realistic ...]

It writes into DIR:

- ``catalog.jsonl``: one line per file (id, name, size, md5, mtime, source,
  and ``state`` for dark/missing/restricted/metadata_not_json items);
- ``ia.ini``, ``env.sh`` (``export`` lines for a client; http mode unless
  ``--https``), ``emulator-ca.pem`` (https mode), ``port`` and ``pid``;

then prints one JSON line ``{"event": "ready", "port": ..., "url": ...}``
on stdout and serves until SIGTERM or SIGINT.  Settings change at runtime
through ``POST http://127.0.0.1:PORT/_emu/config`` (see ``control``).
"""

import argparse
import dataclasses
import json
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from iatools.base.sizes import size_argument
from tests.emulator.catalog import Catalog
from tests.emulator.emulator import Emulator
from tests.emulator.settings import Settings


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m tests.emulator",
                                     description="A local archive.org for tests and demos.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a generated catalog until SIGTERM",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--state-dir", required=True, type=Path, metavar="DIR",
                       help="where to write ia.ini, env.sh, port, catalog.jsonl")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    serve.add_argument("--https", action="store_true",
                       help="env.sh for https mode (CONNECT + TLS) instead of http mode")
    serve.add_argument("--no-credentials", action="store_true",
                       help="leave the S3 keys and cookies out of ia.ini")
    _add_catalog_options(serve.add_argument_group("catalog"))
    _add_setting_options(serve.add_argument_group("settings (changeable at runtime)"))
    return parser


def _add_catalog_options(group):
    group.add_argument("--items", type=int, default=20, metavar="N",
                       help="items (default: %(default)s)")
    group.add_argument("--files-per-item", type=int, default=3, metavar="N",
                       help="files (plain) or originals (realistic) per item "
                            "(default: %(default)s)")
    group.add_argument("--file-size", type=size_argument, default=10 * 1024,
                       metavar="SIZE",
                       help="file size, e.g. 10K, 1G (default: 10K)")
    group.add_argument("--mix", choices=("plain", "realistic"), default="plain",
                       help="kinds of files in each item (default: %(default)s)")
    group.add_argument("--collection", default="demo", metavar="NAME",
                       help="collection (default: %(default)s)")
    group.add_argument("--seed", type=int, default=1, metavar="N",
                       help="seed for sizes (default: %(default)s)")
    group.add_argument("--identifier-prefix", metavar="PREFIX",
                       help="identifiers are PREFIX0001... (default: COLLECTION-)")
    group.add_argument("--special", action="store_true",
                       help="add the special-* items (dark, missing, restricted, "
                            "unsafe and odd names, not-JSON metadata) in collection 'special'")


def _add_setting_options(group):
    for setting in dataclasses.fields(Settings):
        flag = "--" + setting.name.replace("_", "-")
        metavar = "RATE" if setting.name.endswith("_rate") else setting.name.upper()
        group.add_argument(flag, dest=setting.name, metavar=metavar,
                           help=f"{setting.metadata['help']} (default: {_shown(setting.default)})")


def _shown(default):
    if isinstance(default, tuple):
        return ",".join(default)
    return "none" if default is None else default


def serve(args):
    catalog = Catalog.generate(args.items, args.files_per_item, args.file_size, args.mix,
                               args.collection, args.seed, args.identifier_prefix)
    if args.special:
        catalog.add_special_items()
    settings = {s.name: getattr(args, s.name) for s in dataclasses.fields(Settings)
                if getattr(args, s.name) is not None}
    try:
        emulator = Emulator(catalog, host=args.host, port=args.port, **settings)
    except ValueError as exc:  # a bad setting value
        print(f"emulator: error: {exc}", file=sys.stderr)
        return 2
    state_dir = args.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    catalog.write_jsonl(state_dir / "catalog.jsonl")
    stopping = _stop_on_signals()
    with emulator:
        _write_state(emulator, state_dir, args)
        print(json.dumps({"event": "ready", "port": emulator.port, "url": emulator.url,
                          "state_dir": str(state_dir)}), flush=True)
        while not stopping.wait(1):
            pass
    return 0


def _write_state(emulator, state_dir, args):
    mode = "https" if args.https else "http"
    env = emulator.client_env(state_dir, mode, credentials=not args.no_credentials)
    lines = [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    (state_dir / "env.sh").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (state_dir / "pid").write_text(f"{os.getpid()}\n", encoding="utf-8")
    # Last: readers wait for this file.
    (state_dir / "port").write_text(f"{emulator.port}\n", encoding="utf-8")


def _stop_on_signals():
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    return stopping


def main(argv=None):
    return serve(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
