"""iatools installed as ``pip install`` installs it for a user, for the
start-up times.  The checkout's editable install puts an import finder in
.venv that every start pays: ``python -c pass`` took 41 ms from .venv and
19 ms from a plain virtual environment, measured at the same minute."""

import shutil
from pathlib import Path

from tests.bench.server import VENV_BIN
from tests.helpers import REPO, run

#: What a wheel of iatools is built from.
_SOURCES = ("iatools", "pyproject.toml", "setup.cfg", "README.md")


def installed_copy(workdir):
    """Build a wheel of the checkout and install it into a new virtual
    environment under ``workdir``; return that environment's bin directory.
    Its dependencies are .venv's, through a .pth file: that adds .venv's
    site-packages to the path without running the .pth files found there
    (the editable finder's among them)."""
    source, venv, wheels = (workdir / name for name in ("wheel-source", "installed", "wheels"))
    for path in (source, venv, wheels):
        shutil.rmtree(path, ignore_errors=True)
    source.mkdir(parents=True)
    for name in _SOURCES:  # a copy: pip builds in the tree it is given
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    python = str(VENV_BIN / "python")
    _run(python, "-m", "venv", "--without-pip", venv)
    _run(python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", wheels, source)
    _run(python, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet",
         "--no-deps", "--no-index", *wheels.glob("*.whl"))
    site_packages = Path(_purelib(venv / "bin" / "python"))
    (site_packages / "bench-dependencies.pth").write_text(_purelib(python) + "\n")
    return venv / "bin"


def _purelib(python):
    return _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip()


def _run(*argv):
    argv = [str(a) for a in argv]
    result = run(argv, timeout=300)
    if result.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.decode().strip()}")
    return result.stdout.decode()
