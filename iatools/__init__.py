"""iatools: composable Unix tools for bulk work against archive.org, and
the same work for Python programs (README, "Python API").

What ``__all__`` lists is the promise; everything else is the commands'
inside.  The names are imported on first use, so that starting a command,
which imports this package, does not import every layer under it.
"""

import importlib

__version__ = "0.1.0"

#: Each public name and the module that holds it.
_HOMES = {
    "search_jobs": "iatools.fetching.search",
    "item_jobs": "iatools.contract.itemlist",
    "JobLog": "iatools.log.joblog",
    "Router": "iatools.routing.router",
    "fetch": "iatools.fetching.run",
    "Fetch": "iatools.fetching.run",
    "IatoolsError": "iatools.base.errors",
}
__all__ = list(_HOMES)


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module 'iatools' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
