"""Servers that answer a client's login in each way a real one can fail to: the client tests of
``farside xe`` and ``farside dr`` see every login problem without starting a pool server
(the ``login_servers`` fixture, in tests/unit/cli/conftest.py)."""

from __future__ import annotations

import http.server
import socketserver
import ssl
import threading
import xmlrpc.server
from collections.abc import Callable
from pathlib import Path
from typing import Any

from farside.cli.tls import make_self_signed

PASSWORD = "secret"
# A password the fake pool refuses with a failure other than a wrong password.
REFUSED_PASSWORD = "refused"


def _login(*args: Any) -> Any:  # user, password, version, originator
    user, password = args[:2]
    if password == PASSWORD:
        return {"Status": "Success", "Value": "OpaqueRef:session"}
    if password == REFUSED_PASSWORD:
        return {"Status": "Failure", "ErrorDescription": ["HOST_IS_SLAVE", "10.0.0.1"]}
    return {"Status": "Failure", "ErrorDescription": ["SESSION_AUTHENTICATION_FAILED", user, "wrong"]}


def _logout(*args: Any) -> Any:
    return {"Status": "Success", "Value": ""}


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # the tests read stderr


class _NotXml(_Quiet):
    def do_POST(self) -> None:
        body = b"<html>a web page</html"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _HangUp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(65536)  # then the connection is closed unanswered


class LoginServers:
    """Servers on loopback ports, each in a thread, all stopped when the test ends."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp = tmp_path
        self._stops: list[Callable[[], None]] = []
        self.silence = threading.Event()  # set at the end: the silent server's handlers return

    def pool(self, tls: bool = False) -> str:
        """A fake pool: logs in with PASSWORD, refuses REFUSED_PASSWORD with HOST_IS_SLAVE."""
        server = xmlrpc.server.SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False, allow_none=True)
        server.register_function(_login, "session.login_with_password")
        server.register_function(_logout, "session.logout")
        if tls:
            cert, key = self._tmp / "cert.pem", self._tmp / "key.pem"
            make_self_signed(cert, key, "localhost")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        return self._start(server, "https" if tls else "http")

    def not_xenapi(self) -> str:
        """XML-RPC, but a login answers a bare string instead of XenAPI's Status/Value record."""
        server = xmlrpc.server.SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False, allow_none=True)
        server.register_function(lambda *args: "hello", "session.login_with_password")
        return self._start(server)

    def http_error(self) -> str:
        """An HTTP server with no POST: every XML-RPC call gets 501."""
        return self._start(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet))

    def not_xml(self) -> str:
        """A web server answering 200 with a page, not XML-RPC."""
        return self._start(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotXml))

    def hang_up(self) -> str:
        """Reads the request and closes the connection unanswered, as a TLS server does to HTTP."""
        return self._start(socketserver.ThreadingTCPServer(("127.0.0.1", 0), _HangUp))

    def silent(self) -> str:
        """Accepts the connection and never answers (a frozen host)."""
        silence = self.silence

        class Silent(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                silence.wait()

        return self._start(socketserver.ThreadingTCPServer(("127.0.0.1", 0), Silent))

    def _start(self, server: socketserver.TCPServer, scheme: str = "http") -> str:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join()

        self._stops.append(stop)
        return f"{scheme}://127.0.0.1:{server.server_address[1]}"

    def stop(self) -> None:
        self.silence.set()
        for stop in self._stops:
            stop()
