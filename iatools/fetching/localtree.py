"""An item's directory on disk against the item's file list: the files it
no longer lists (reported by ia-fetch and ia-verify, removed by
``ia-fetch --delete``).  Never anything outside the item's directory, never
iatools' own temporaries or locks."""

import os

from iatools.base import errors
from iatools.fetching.locks import LOCK_SUFFIX
from iatools.fetching.transfer import TEMP_SUFFIX

_OWN_SUFFIXES = (TEMP_SUFFIX, LOCK_SUFFIX)


def unlisted_files(item_dir, listed_names):
    """Sorted names (relative, with ``/``) of the regular files and symlinks
    below ``item_dir`` that are not in ``listed_names``.  Symlinked
    directories are not entered."""
    listed = set(listed_names)
    found = []
    for directory, subdirectories, files in os.walk(item_dir):
        subdirectories[:] = [d for d in subdirectories
                             if not os.path.islink(os.path.join(directory, d))]
        relative = os.path.relpath(directory, item_dir)
        for name in files:
            if name.endswith(_OWN_SUFFIXES):
                continue
            path_name = name if relative == "." else f"{relative}/{name}"
            path_name = path_name.replace(os.sep, "/")
            if path_name not in listed:
                found.append(path_name)
    return sorted(found)


def delete_files(item_dir, names):
    """Remove ``names`` (from ``unlisted_files``) and the directories they
    leave empty below ``item_dir``; return the names removed.  A file that
    cannot be removed is reported and kept."""
    deleted = []
    for name in names:
        path = os.path.join(item_dir, *name.split("/"))
        try:
            os.unlink(path)  # a symlink goes, never its target
        except OSError as exc:
            errors.warning(f"cannot delete {path}: {exc.strerror}")
            continue
        deleted.append(name)
        _remove_empty_parents(item_dir, os.path.dirname(path))
    return deleted


def _remove_empty_parents(item_dir, directory):
    top = os.path.normpath(item_dir)
    while os.path.normpath(directory) != top and directory.startswith(top + os.sep):
        try:
            os.rmdir(directory)
        except OSError:
            return  # not empty (or not ours to remove): stop here
        directory = os.path.dirname(directory)
