"""Throw-away ssh hosts for tests: one sshd per host name, on 127.0.0.1.

``SshHosts(workdir, {"host-a": {"VAR": "value"}, ...}).start()`` generates a
host key, a client key and its authorized_keys, an ``sshd_config`` per host
(a free loopback port, ``SetEnv`` for that host's variables, which is how a
test gives each "machine" its own disks) and one ``ssh_config`` in which
every host name is an alias of 127.0.0.1 with its port.  ``ssh_command``
(``ssh -F CONFIG``) then reaches any of them, for ``parallel --ssh`` too.

``start`` raises ``Unavailable`` with the reason when the machine cannot do
this (no sshd, no ssh-keygen, sshd refuses to start or to log us in); tests
skip with that reason.
"""

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

#: Where Debian's sshd looks for it; a plain PATH lookup misses /usr/sbin for users.
SSHD_CANDIDATES = ("sshd", "/usr/sbin/sshd", "/usr/local/sbin/sshd")
#: Debian's sshd refuses to start as root without its privilege separation
#: directory, which the service's start script normally creates.
PRIVSEP_DIR = Path("/run/sshd")
START_TIMEOUT = 10.0


class Unavailable(Exception):
    """This machine cannot run the throw-away sshd; the message says why."""


def _find(names):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SshHosts:
    def __init__(self, workdir, hosts):
        self.dir = Path(workdir)
        self.hosts = dict(hosts)
        self.config = self.dir / "ssh_config"
        self.processes = {}
        self.ports = {}

    @property
    def ssh_command(self):
        return f"ssh -F {self.config}"

    def start(self):
        sshd, keygen = _find(SSHD_CANDIDATES), _find(["ssh-keygen"])
        if not (sshd and keygen and shutil.which("ssh")):
            raise Unavailable("sshd, ssh or ssh-keygen is not installed "
                              "(tests/setup-system.sh installs openssh-server as root)")
        if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        for key in ("host_key", "client_key"):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / key)],
                           check=True, capture_output=True)
        shutil.copy(self.dir / "client_key.pub", self.dir / "authorized_keys")
        try:
            for name, env in self.hosts.items():
                self._start_sshd(sshd, name, env)
            self._write_client_config()
            for name in self.hosts:
                self._check_login(name)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_sshd(self, sshd, name, env, attempts=3):
        for _ in range(attempts):
            port = _free_port()  # another process may take it first: retried
            config = self.dir / f"sshd_config.{name}"
            config.write_text("\n".join([
                f"Port {port}", "ListenAddress 127.0.0.1",
                f"HostKey {self.dir / 'host_key'}",
                f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                "PermitRootLogin prohibit-password", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "StrictModes no", "UsePAM no",
                f"PidFile {self.dir / f'sshd.{name}.pid'}",
                *(f"SetEnv {var}={value}" for var, value in env.items()),
            ]) + "\n")
            log = open(self.dir / f"sshd.{name}.log", "ab")
            process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)],
                                       stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            log.close()
            if self._listening(process, port):
                self.processes[name], self.ports[name] = process, port
                return
        raise Unavailable(f"sshd did not start: {self._log_tail(name)}")

    def _listening(self, process, port):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        process.kill()
        process.wait()
        return False

    def _write_client_config(self):
        blocks = []
        for name, port in self.ports.items():
            blocks.append("\n".join([
                f"Host {name}", "  HostName 127.0.0.1", f"  Port {port}",
                f"  User {_user()}", f"  IdentityFile {self.dir / 'client_key'}",
                "  IdentitiesOnly yes", "  BatchMode yes", "  StrictHostKeyChecking no",
                "  UserKnownHostsFile /dev/null", "  LogLevel ERROR",
            ]))
        self.config.write_text("\n\n".join(blocks) + "\n")

    def _check_login(self, name):
        probe = subprocess.run([*self.ssh_command.split(), name, "true"],
                               capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
        if probe.returncode != 0:
            raise Unavailable(f"cannot log in to the test sshd ({name}): "
                              f"{probe.stderr.decode(errors='replace').strip()} "
                              f"{self._log_tail(name)}")

    def _log_tail(self, name):
        path = self.dir / f"sshd.{name}.log"
        text = path.read_text(errors="replace").strip() if path.exists() else ""
        return " / ".join(text.splitlines()[-3:]) or "(no sshd log)"

    def stop(self):
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()


def _user():
    return pwd.getpwuid(os.geteuid()).pw_name
