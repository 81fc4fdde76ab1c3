"""The wire: XML-RPC on / and /RPC2, JSON-RPC 1.0 and 2.0 on /jsonrpc, and HTTPS."""

from __future__ import annotations

import ssl
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import XenAPI

from pools import ADMIN_PASSWORD, PoolServer


@pytest.mark.parametrize("path", ["", "/", "/RPC2"])
def test_sdk_urls_with_and_without_path(shared_server: PoolServer, path: str) -> None:
    """The SDK works with a bare URL (it posts to /RPC2) and with / or /RPC2 given."""
    s = shared_server.session(path=path)
    assert len(s.xenapi.pool.get_all()) == 1


def test_integers_are_strings_in_xmlrpc(shared_server: PoolServer) -> None:
    """64-bit ints travel as decimal strings in XML-RPC, as xapi sends them."""
    s = shared_server.session()
    host = s.xenapi.host.get_all()[0]
    metrics = s.xenapi.host.get_metrics(host)
    total = s.xenapi.host_metrics.get_memory_total(metrics)
    assert isinstance(total, str) and int(total) > 0
    assert s.xenapi.host.get_API_version_major(host) == "2"


def jsonrpc(server: PoolServer, method: str, params: list[object], v2: bool) -> dict[str, object]:
    body: dict[str, object] = {"method": method, "params": params, "id": 42}
    if v2:
        body["jsonrpc"] = "2.0"
    response = server.post("/jsonrpc", orjson.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == 200
    result: dict[str, object] = response.json()
    return result


class TestJsonRpc:
    def test_v1_success_and_failure(self, shared_server: PoolServer) -> None:
        """Version 1.0: result with error null, or error as the ErrorDescription list."""
        login = jsonrpc(shared_server, "session.login_with_password", ["root", ADMIN_PASSWORD, "1.0", "t"], False)
        assert login["error"] is None and login["id"] == 42
        session = login["result"]
        pools = jsonrpc(shared_server, "pool.get_all_records", [session], False)
        record = next(iter(pools["result"].values()))  # type: ignore[attr-defined]
        assert record["name_label"] == "Site A"
        host = jsonrpc(shared_server, "host.get_all_records", [session], False)["result"]
        assert isinstance(next(iter(host.values()))["API_version_major"], int)  # type: ignore[attr-defined]
        failed = jsonrpc(shared_server, "VM.get_record", [session, "OpaqueRef:x"], False)
        assert failed == {"result": None, "error": ["HANDLE_INVALID", "VM", "OpaqueRef:x"], "id": 42}

    def test_v2_success_and_failure(self, shared_server: PoolServer) -> None:
        """Version 2.0: jsonrpc member, and errors as {code, message: CODE, data: params}."""
        login = jsonrpc(shared_server, "session.login_with_password", ["root", ADMIN_PASSWORD], True)
        assert login["jsonrpc"] == "2.0" and "error" not in login
        failed = jsonrpc(shared_server, "VM.get_by_uuid", [login["result"], "nope"], True)
        error = failed["error"]
        assert isinstance(error, dict)
        assert error["message"] == "UUID_INVALID" and error["data"] == ["VM", "nope"] and error["code"] != 0

    def test_sessions_are_shared_between_encodings(self, shared_server: PoolServer) -> None:
        """A session made over XML-RPC works over JSON-RPC."""
        s = shared_server.session()
        answer = jsonrpc(shared_server, "pool.get_all", [s.handle], True)
        assert answer["result"] == s.xenapi.pool.get_all()

    def test_null_id_in_v2_is_refused(self, shared_server: PoolServer) -> None:
        """A 2.0 request with a null id is a client error, as xapi requires an id."""
        body = orjson.dumps({"jsonrpc": "2.0", "method": "pool.get_all", "params": [], "id": None})
        assert shared_server.post("/jsonrpc", body).status_code == 400


@pytest.fixture
def https_server(pool_dir: Path) -> Iterator[PoolServer]:
    srv = PoolServer(pool_dir, tls=True).start()
    try:
        yield srv
    finally:
        srv.stop()


class TestHttps:
    def test_sdk_over_https(self, https_server: PoolServer) -> None:
        """With --tls the API is served over HTTPS with the pool's own certificate."""
        s = https_server.session()
        assert s.xenapi.pool.get_all()

    def test_certificate_is_the_pools(self, https_server: PoolServer) -> None:
        """A client that trusts the pool's certificate verifies the connection."""
        context = ssl.create_default_context(cafile=str(https_server.data_dir / "tls" / "cert.pem"))
        response = httpx.get(https_server.url + "/", verify=context)
        assert response.status_code == 200

    def test_plain_http_is_not_served(self, https_server: PoolServer) -> None:
        """The HTTPS port does not answer plain XML-RPC."""
        proxy = xmlrpc.client.ServerProxy(https_server.url.replace("https", "http"))
        with pytest.raises((xmlrpc.client.ProtocolError, ConnectionError, OSError)):
            proxy.session.login_with_password("root", ADMIN_PASSWORD)


def test_get_is_answered_with_a_description(shared_server: PoolServer) -> None:
    """A browser pointed at the server learns what it is."""
    response = httpx.get(shared_server.url + "/")
    assert response.status_code == 200 and "XenAPI" in response.text


def test_sdk_failure_type(shared_server: PoolServer) -> None:
    """Failures reach SDK users as XenAPI.Failure with the ErrorDescription as details."""
    s = shared_server.session()
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.VM.get_by_uuid("x")
    assert info.value.details == ["UUID_INVALID", "VM", "x"]
