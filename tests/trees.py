"""What is on disk against what the emulator serves: md5s, temporaries and
modification times of a tree, for the tests to compare."""

import hashlib
import os
from pathlib import Path

from iatools.fetching.transfer import TEMP_SUFFIX


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
    return [p for p in Path(root).rglob(f"*{TEMP_SUFFIX}")]


def mtimes(root):
    root = Path(root)
    return {str(p.relative_to(root)): int(os.stat(p).st_mtime)
            for p in root.rglob("*") if p.is_file()}
