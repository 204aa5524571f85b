"""An archive.org emulator: a local HTTP server that speaks the parts of the
archive.org API iatools uses, reached by unmodified clients through proxy
variables and an ia config file (``Emulator.client_env``).

In-process: ``Emulator(Catalog.generate(...)).start()``; out of process:
``python -m tests.emulator serve --state-dir DIR`` (see ``__main__``).
"""

from tests.emulator.catalog import Catalog, FileSpec
from tests.emulator.emulator import ACCESS_KEY, CONTROL_HOST, SECRET_KEY, Emulator
from tests.emulator.faults import parse_fault
from tests.emulator.settings import FAULT_KINDS, Settings

__all__ = [
    "ACCESS_KEY", "CONTROL_HOST", "FAULT_KINDS", "SECRET_KEY", "Catalog", "Emulator",
    "FileSpec", "Settings", "parse_fault",
]
