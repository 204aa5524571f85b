"""``Emulator``: the archive.org emulator, run in-process.

    with Emulator(Catalog.generate(items=5), latency=0.01) as emu:
        env = {**os.environ, **emu.client_env(tmp_path)}
        subprocess.run(["ia-fetch", ...], env=env)
        emu.stats()["requests_by_kind"]

Clients reach it only through standard configuration, see ``client_env``.
"""

import threading
from pathlib import Path

from tests.emulator.catalog import Catalog
from tests.emulator.faults import Faults
from tests.emulator.server import EmulatorServer
from tests.emulator.settings import Settings
from tests.emulator.stats import Stats
from tests.emulator.tls import TlsIdentity

ACCESS_KEY = "emulator-access-key"
SECRET_KEY = "emulator-secret-key"
SCREENNAME = "emulator-user"
CONTROL_HOST = "emulator.invalid"


class Emulator:
    """An HTTP server on ``host:port`` (port 0: any free one) that serves
    ``catalog`` as archive.org would.  ``settings`` are the ``Settings``
    fields (latency, bandwidth, fault rates ...)."""

    def __init__(self, catalog=None, *, host="127.0.0.1", port=0, access_key=ACCESS_KEY,
                 secret_key=SECRET_KEY, screenname=SCREENNAME, **settings):
        self.catalog = catalog if catalog is not None else Catalog.generate()
        self.settings = Settings()
        self.settings.update(settings)
        self.faults = Faults(self.settings)
        self.recorder = Stats()
        self.tls = TlsIdentity()
        self.stop_event = threading.Event()
        self.access_key, self.secret_key, self.screenname = access_key, secret_key, screenname
        self._address = (host, port)
        self._server = None

    def start(self):
        self.stop_event.clear()
        self._server = EmulatorServer(self._address, self)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         name="emulator", daemon=True).start()
        return self

    def stop(self):
        """Stop listening and drop every connection (stalls end at once)."""
        if self._server is None:
            return
        self.stop_event.set()
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def url(self):
        """Where the emulator listens: proxy address and control base URL."""
        return f"http://{self._address[0]}:{self.port}"

    def configure(self, **changes):
        """Change settings while running; returns all settings."""
        self.settings.update(changes)
        if "fault_seed" in changes:
            self.faults.reseed(self.settings.fault_seed)
        return self.settings.as_dict()

    def inject(self, pattern, faults):
        """Scripted faults for the next requests matching ``pattern``; see
        ``Faults.inject`` for patterns and ``tests.emulator.faults`` for the
        fault words ("503:2", "reset", "corrupt", "stall:5", "close", ...)."""
        self.faults.inject(pattern, faults)

    def clear_injections(self):
        self.faults.clear()

    def stats(self, with_log=True):
        """Counters and request log; see ``tests.emulator.stats``."""
        return self.recorder.snapshot(with_log)

    def reset_stats(self):
        self.recorder.reset()

    def authorized(self, authorization_header):
        """Whether the header carries our S3 keys, as the library sends them."""
        return authorization_header == f"LOW {self.access_key}:{self.secret_key}"

    def write_ca(self, path):
        return self.tls.write_ca(path)

    def write_config(self, path, mode="http", credentials=True):
        """Write an ia config file.  ``screenname`` is always there (the library
        fails without it); ``secure = false`` in http mode (honoured by iatools,
        ignored by the library: ``ia`` needs ``--insecure``); S3 keys and the
        login cookies when ``credentials``."""
        lines = ["# ia config written by the archive.org emulator (tests/emulator)",
                 "[general]", f"screenname = {self.screenname}"]
        if mode == "http":
            lines.append("secure = false")
        if credentials:
            lines += ["", "[s3]", f"access = {self.access_key}", f"secret = {self.secret_key}",
                      "", "[cookies]", f"logged-in-user = {self.screenname}@example.invalid",
                      "logged-in-sig = emulator-signature"]
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def client_env(self, workdir, mode="http", credentials=True):
        """Write ``WORKDIR/ia.ini`` (and ``WORKDIR/emulator-ca.pem`` in https
        mode) and return the environment additions that point a client here:

        - ``IA_CONFIG_FILE``: that ia.ini (see ``write_config``);
        - ``http_proxy``/``HTTP_PROXY``: this server, in both modes;
        - http mode: ``https_proxy``/``HTTPS_PROXY`` empty, so nothing escapes
          to a real proxy (clients must use http:// URLs);
        - https mode: ``https_proxy``/``HTTPS_PROXY`` this server (it answers
          CONNECT), ``REQUESTS_CA_BUNDLE`` and ``SSL_CERT_FILE`` the CA;
        - ``no_proxy``/``NO_PROXY`` empty, so no host bypasses the proxy.
        """
        if mode not in ("http", "https"):
            raise ValueError(f"mode must be 'http' or 'https', not {mode!r}")
        workdir = Path(workdir)
        config = self.write_config(workdir / "ia.ini", mode, credentials)
        https_proxy = self.url if mode == "https" else ""
        env = {"IA_CONFIG_FILE": str(config), "no_proxy": "", "NO_PROXY": "",
               "http_proxy": self.url, "HTTP_PROXY": self.url,
               "https_proxy": https_proxy, "HTTPS_PROXY": https_proxy}
        if mode == "https":
            ca = str(self.write_ca(workdir / "emulator-ca.pem"))
            env.update(REQUESTS_CA_BUNDLE=ca, SSL_CERT_FILE=ca)
        return env
