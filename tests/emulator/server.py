"""The HTTP/1.1 server behind ``Emulator``: a proxy that is its own origin.

It accepts absolute-URI request lines (``GET http://archive.org/... HTTP/1.1``,
what clients send to an http proxy), origin-form lines (routed by the Host
header), and ``CONNECT host:443``, after which it speaks TLS on the same
socket and serves the tunnelled requests itself.  Connections are kept
alive; every response carries Content-Length.  Faults and bandwidth pacing
are applied here, while sending.
"""

import contextlib
import email.utils
import http
import http.server
import itertools
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

from tests.emulator.control import control_reply
from tests.emulator.pacing import Pacer, chunk_size
from tests.emulator.routes import Request, archive_reply, request_kind, text_reply


class EmulatorServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 1024

    def __init__(self, address, emulator):
        self.emulator = emulator
        self._handlers = set()
        self._handlers_lock = threading.Lock()
        self._connection_ids = itertools.count(1)
        super().__init__(address, Handler)

    def register(self, handler):
        with self._handlers_lock:
            self._handlers.add(handler)
        return next(self._connection_ids)

    def unregister(self, handler):
        with self._handlers_lock:
            self._handlers.discard(handler)

    def close_connections(self):
        """Wake every connection thread (stop() must not leave them reading)."""
        with self._handlers_lock:
            handlers = list(self._handlers)
        for handler in handlers:
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request, client_address):
        # Clients dropping connections (and failed TLS handshakes) are normal
        # here; anything else is a bug worth a traceback.
        if not isinstance(sys.exc_info()[1], OSError):  # ssl.SSLError is one too
            super().handle_error(request, client_address)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.emu = self.server.emulator
        self.connection_id = self.server.register(self)
        self.tls = False
        self.tunnel_host = None
        self.pacer = Pacer(self.emu.stop_event)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.emu.recorder.connection_opened()

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.unregister(self)
            if self.tls:  # the raw socket was handed to the TLS one
                self.connection.close()

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        """Quiet: the request log is in the stats."""

    def parse_request(self):
        # The request line has just arrived: latency counts from here, so
        # the emulator's own parsing and reply building fall inside it
        # instead of adding a Python-speed delay that archive.org lacks.
        self.arrived, self.arrived_wall = time.monotonic(), time.time()
        return super().parse_request()

    def do_CONNECT(self):
        host = _without_port(self.path).lower()
        self._begin("connect", host, self.path, "")
        self.close_connection = True
        if self.tls:
            return self._send(text_reply(405, "no CONNECT in a tunnel"), None)
        self.emu.recorder.tunnel_opened()
        self.entry["status"] = 200
        self._commit()
        self.connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        tunnel = self.emu.tls.context.wrap_socket(self.connection, server_side=True)
        # The client speaks only after reading our 200, so the old reader
        # holds no buffered bytes of the TLS handshake.
        self.rfile.close()
        self.connection, self.tls, self.tunnel_host = tunnel, True, host
        self.rfile = tunnel.makefile("rb")
        self.wfile = tunnel.makefile("wb")
        self.close_connection = False

    def do_GET(self):
        request = self._read_request()
        kind = request_kind(request)
        self._begin(kind, request.host, request.path, request.query)
        try:
            self._respond(request, kind)
        except OSError:  # the client went away
            self.close_connection = True
        finally:
            self._commit()

    do_HEAD = do_POST = do_DELETE = do_GET

    def _read_request(self):
        target = urllib.parse.urlsplit(self.path)
        if target.scheme:
            host = target.hostname or ""
        else:
            host = _without_port(self.headers.get("Host") or self.tunnel_host or "")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True  # we cannot find the next request
        return Request(self.command, host.lower(), urllib.parse.unquote(target.path or "/"),
                       target.query, self.headers, body, self.tls)

    def _begin(self, kind, host, path, query):
        self.entry = {
            "start": self.arrived_wall, "end": None, "method": self.command, "host": host,
            "path": path, "query": query, "range": self.headers.get("Range"),
            "status": None, "bytes": 0, "conn": self.connection_id, "tls": self.tls,
            "kind": kind, "fault": None, "user_agent": self.headers.get("User-Agent"),
            "auth": "Authorization" in self.headers,
        }
        self.file_key = None
        self.committed = False

    def _commit(self):
        """Log the request.  Done just *before* its last write, so that a
        client that has seen the whole response finds it in the stats."""
        if not self.committed:
            self.committed = True
            self.entry["end"] = time.time()
            self.emu.recorder.record(self.entry, self.file_key)

    def _respond(self, request, kind):
        if kind == "control":
            return self._send(control_reply(self.emu, request), None)
        fault = self.emu.faults.choose(kind, request.path, request.host,
                                       self.client_address[0])
        self.entry["fault"] = str(fault) if fault else None
        if fault is not None and fault.name == "close":
            self._commit()
            return self._abort(reset=False)
        settings = self.emu.settings
        reply = archive_reply(self.emu, request, kind, fault)
        if settings.latency:
            self.emu.stop_event.wait(settings.latency - (time.monotonic() - self.arrived))
        if fault is not None and fault.name == "stall":
            self.emu.stop_event.wait(fault.seconds or settings.stall_seconds)
        return self._send(reply, fault)

    def _send(self, reply, fault):
        fault_name = fault.name if fault else None
        self.entry["status"], self.file_key = reply.status, reply.file_key
        pieces = [(self._head(reply), False)]
        if self.command != "HEAD":
            body = self._body_chunks(reply.body, fault)
            pieces = itertools.chain(pieces, ((chunk, True) for chunk in body))
        with self.emu.recorder.transfer() if reply.file_key else contextlib.nullcontext():
            for (data, is_body), is_last in _with_last(pieces):
                self._write(data, is_body, is_last)
        if fault_name == "reset":
            self._abort(reset=True)

    def _write(self, data, is_body, is_last):
        if is_body:
            self.pacer.pay(len(data), self.emu.settings.bandwidth)
            self.entry["bytes"] += len(data)
        if is_last:
            self._commit()
        try:
            self.connection.sendall(data)
        except OSError:
            if is_body:
                self.emu.recorder.unsent(self.entry, self.file_key, len(data), self.committed)
            raise

    def _head(self, reply):
        lines = [f"HTTP/1.1 {reply.status} {http.HTTPStatus(reply.status).phrase}",
                 f"Date: {email.utils.formatdate(usegmt=True)}", "Server: ia-emulator",
                 f"Content-Length: {reply.body.length}"]
        lines += [f"{name}: {value}" for name, value in reply.headers]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _body_chunks(self, body, fault):
        """The body as sent: cut at half for a reset, one byte flipped for
        corrupt, a silence after half for hang."""
        fault_name = fault.name if fault else None
        limit = body.length // 2 if fault_name == "reset" else body.length
        flip_at = body.length // 2 if fault_name == "corrupt" else -1
        hang_at = body.length // 2 if fault_name == "hang" else -1
        position = 0
        for chunk in body.chunks(chunk_size(self.emu.settings.bandwidth)):
            chunk = chunk[:limit - position]
            if not chunk:
                return
            if 0 <= hang_at - position < len(chunk):
                yield chunk[:hang_at - position]
                self.emu.stop_event.wait(fault.seconds or self.emu.settings.stall_seconds)
                chunk, position = chunk[hang_at - position:], hang_at
            if 0 <= flip_at - position < len(chunk):
                chunk = bytearray(chunk)
                chunk[flip_at - position] ^= 0xFF
            yield chunk
            position += len(chunk)

    def _abort(self, reset):
        """Close the connection now; ``reset`` makes it an RST, not a FIN."""
        self.close_connection = True
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        # The socket really closes once its reader is closed too.
        self.connection.close()
        self.rfile.close()


def _with_last(iterable):
    """(item, is_last) for each item."""
    iterator = iter(iterable)
    previous = next(iterator, _NOTHING)
    for item in iterator:
        yield previous, False
        previous = item
    if previous is not _NOTHING:
        yield previous, True


_NOTHING = object()


def _without_port(host):
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() else host
