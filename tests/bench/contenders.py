"""The download contenders, as the shell command a user would type.

Each builder gets the paths it needs and returns a ``bash -c`` string; the
environment (proxy variables, IA_CONFIG_FILE, .venv/bin on PATH) comes from
``EmulatorProcess.client_env``.  In http mode iatools honours ``secure =
false`` in the config and ``ia`` needs ``--insecure``; in https mode (CONNECT
and TLS per host, as on the real service) every contender trusts the
emulator's CA from ``$REQUESTS_CA_BUNDLE``.
"""

import shlex
import shutil
import subprocess

from tests.bench.server import VENV_BIN
from tests.helpers import REPO, command

#: Row names; the table's header says what each runs.
IATOOLS = "iatools"
IA_SEQUENTIAL = "ia"
IA_PARALLEL = "ia+parallel"
CURL = "curl"
RCLONE = "rclone"
#: Where the bench's system packages come from (rclone).
SETUP = "tests/bench/setup-system.sh"


def _ia(https):
    return shlex.quote(str(VENV_BIN / "ia")) + ("" if https else " --insecure")


def _bin(name):
    return shlex.quote(str(VENV_BIN / name))


def iatools(ids_file, dest, jobs, events="/dev/null", log=None):
    """ia-resolve | ia-fetch, events to ``events`` or appended to ``log``."""
    tail = f"| {_bin('ia-joblog')} append {shlex.quote(str(log))}" if log else \
        f"> {shlex.quote(str(events))}"
    return (f"{_bin('ia-resolve')} --itemlist {shlex.quote(str(ids_file))} "
            f"| {_bin('ia-fetch')} -q -j {jobs} -d {shlex.quote(str(dest))} {tail}")


def ia_verify(ids_file, tree, jobs, events):
    """ia-resolve | ia-verify: the audit of a tree, events to ``events``.
    The checkout's launchers (bin/), whatever .venv's editable install points
    at: start-up does not count next to reading a tree."""
    return (f"{shlex.quote(command('ia-resolve'))} --itemlist {shlex.quote(str(ids_file))} "
            f"| {shlex.quote(command('ia-verify'))} -q -j {jobs} -d {shlex.quote(str(tree))} "
            f"> {shlex.quote(str(events))}")


def md5sum_parallel(files_list, jobs):
    """md5sum of the NUL-separated paths in ``files_list``, ``jobs`` at once."""
    return f"xargs -0 -P {jobs} -n 1 md5sum < {shlex.quote(str(files_list))} > /dev/null"


def iatools_elsewhere(env):
    """Where the iatools the contenders run lives, when it is not this
    checkout (a worktree sharing another checkout's .venv benches that
    checkout's code; PYTHONPATH=<this checkout> benches this one), or None."""
    found = subprocess.run([str(VENV_BIN / "python"), "-c",
                            "import iatools, os; print(os.path.dirname(iatools.__file__))"],
                           env=env, capture_output=True, text=True, cwd="/")
    where = found.stdout.strip()
    return None if where == str(REPO / "iatools") else where or found.stderr.strip()[-200:]


def iatools_retry_failed(log, dest, jobs):
    """The README's re-run of what failed: ia-joblog failed | ia-fetch."""
    log = shlex.quote(str(log))
    return (f"{_bin('ia-joblog')} failed {log} "
            f"| {_bin('ia-fetch')} -q -j {jobs} -d {shlex.quote(str(dest))} "
            f"| {_bin('ia-joblog')} append {log}")


def ia_sequential(ids_file, dest, names=None, https=False):
    """One ``ia download --itemlist``: items one after another."""
    glob = f" --glob {shlex.quote('|'.join(names))}" if names else ""
    return (f"{_ia(https)} download --itemlist {shlex.quote(str(ids_file))} "
            f"--destdir {shlex.quote(str(dest))} -q{glob}")


def ia_parallel(ids_file, dest, jobs, https=False):
    """GNU parallel running one ``ia download ID`` per item."""
    return (f"parallel --will-cite -j {jobs} {_ia(https)} download {{}} "
            f"--destdir {shlex.quote(str(dest))} -q < {shlex.quote(str(ids_file))}")


def ia_parallel_files(identifier, names_file, dest, jobs):
    """GNU parallel running one ``ia download ID FILE`` per file of one item:
    the best GNU parallel can do when there is a single item."""
    return (f"parallel --will-cite -j {jobs} {_ia(False)} download "
            f"{shlex.quote(identifier)} {{}} --destdir {shlex.quote(str(dest))} -q "
            f"< {shlex.quote(str(names_file))}")


def curl(config_file, jobs, https=False):
    """One curl process, ``jobs`` transfers at once, following the 302 to
    the storage host as any client must; no checksum of its own."""
    ca = ' --cacert "$REQUESTS_CA_BUNDLE"' if https else ""
    return (f"curl --parallel --parallel-max {jobs} --parallel-immediate -L -sS -f "
            f"--retry 5 --create-dirs{ca} --config {shlex.quote(str(config_file))}")


def write_curl_config(path, files, dest, https=False):
    """One url/output pair per catalog file (``files``: catalog records)."""
    scheme = "https" if https else "http"
    with open(path, "w", encoding="utf-8") as out:
        for f in files:
            url = f"{scheme}://archive.org/download/{f['id']}/{f['name']}?cnt=0"
            out.write(f'url = "{url}"\noutput = "{dest}/{f["id"]}/{f["name"]}"\n')


def rclone(ids_file, dest, jobs):
    """rclone's internetarchive backend, ``jobs`` items at once under GNU
    parallel (an item is a bucket; there is no listing of all items), each
    item's files 4 at a time, md5-checked by rclone; https mode only."""
    return (f"parallel --will-cite -j {jobs} rclone copy --config /dev/null "
            f'--ca-cert "$REQUESTS_CA_BUNDLE" --transfers 4 --retries 10 --low-level-retries 10 '
            f"-q :internetarchive:{{}} {shlex.quote(str(dest))}/{{}} "
            f"< {shlex.quote(str(ids_file))}")


def rclone_missing():
    """Why the rclone rows cannot run, or None."""
    if shutil.which("rclone") is None:
        return f"rclone is not installed ({SETUP} installs it)"
    return gnu_parallel_missing()


def gnu_parallel_missing():
    """Why the GNU parallel rows cannot run, or None."""
    if shutil.which("parallel") is None:
        return "GNU parallel is not installed"
    version = subprocess.run(["parallel", "--version"], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL)
    if "GNU parallel" not in version.stdout:
        return "'parallel' is not GNU parallel (moreutils?)"
    return None
