"""Console logins, cookies, CSRF and roles, through the real app in process."""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from farside.config import ServerConfig
from farside.db import Database, users
from farside.model.roles import Role
from farside.server import build_app

from pools import ADMIN_PASSWORD, MINIMAL_VM, make_pool

PASSWORDS = {"root": ADMIN_PASSWORD, "reader": "read-pw", "operator": "op-pw"}
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def pool_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("web") / "pool"
    make_pool(data)
    db = Database.open(data / "pool.db")
    try:
        with db.write() as tx:
            users.add(tx, "reader", Role.READ_ONLY, PASSWORDS["reader"])
            users.add(tx, "operator", Role.POOL_OPERATOR, PASSWORDS["operator"])
    finally:
        db.close()
    return data


@pytest.fixture(scope="module")
def app_client(pool_data: Path) -> Iterator[TestClient]:
    """One app for the module; each test gets fresh cookies through ``client``."""
    with TestClient(build_app(ServerConfig(pool_data)), follow_redirects=False) as client:
        yield client


@pytest.fixture
def client(app_client: TestClient) -> TestClient:
    app_client.cookies.clear()
    return app_client


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


def log_in(client: TestClient, user: str) -> str:
    """Log ``user`` in through the form (a new browser); returns the page CSRF token of the login."""
    client.cookies.clear()
    form = client.get("/ui/login")
    response = client.post(
        "/ui/login", data={"username": user, "password": PASSWORDS[user], "csrf": csrf_of(form.text), "next": "/ui/"}
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/ui/").text)


def xenapi(client: TestClient, method: str, *params: Any) -> Any:
    """A JSON-RPC call on the same server (to arrange what the console then shows)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer = client.post("/jsonrpc", json=body).json()
    assert "error" not in answer, answer
    return answer["result"]


def _login_response(client: TestClient, user: str, password: str, token: str | None = None):  # type: ignore[no-untyped-def]
    form = client.get("/ui/login")
    data = {"username": user, "password": password, "next": "/ui/"}
    data["csrf"] = csrf_of(form.text) if token is None else token
    return client.post("/ui/login", data=data)


class TestLogin:
    def test_pages_need_a_login(self, client: TestClient) -> None:
        """Without a login, a page sends the browser to the login form, remembering where it was going."""
        response = client.get("/ui/history")
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/login?next=/ui/history"
        assert client.get("/ui/events?token=1").status_code == 401

    def test_the_cookie_is_httponly_strict_and_holds_no_session_ref(self, client: TestClient) -> None:
        """The login cookie is HttpOnly and SameSite=Strict, scoped to /ui; its value is no XenAPI ref."""
        response = _login_response(client, "root", PASSWORDS["root"])
        assert response.status_code == 303 and response.headers["location"] == "/ui/"
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("farside_console="))
        attributes = cookie.lower()
        assert "httponly" in attributes and "samesite=strict" in attributes and "path=/ui" in attributes
        assert "secure" not in attributes  # plain HTTP here
        value = cookie.split(";")[0].split("=", 1)[1]
        assert "OpaqueRef" not in value and len(value) >= 40
        assert value not in response.headers["location"]

    def test_the_cookie_is_secure_under_tls(self, app_client: TestClient) -> None:
        """Served over HTTPS, the console's cookies carry Secure."""
        app_client.cookies.clear()
        form = app_client.get("https://testserver/ui/login")
        assert "secure" in form.headers["set-cookie"].lower()
        response = app_client.post(
            "https://testserver/ui/login",
            data={"username": "root", "password": PASSWORDS["root"], "csrf": csrf_of(form.text)},
        )
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("farside_console="))
        assert "secure" in cookie.lower()
        app_client.cookies.clear()

    def test_a_wrong_password_is_refused(self, client: TestClient) -> None:
        """A wrong password gets the form again with a message, and no login cookie."""
        response = _login_response(client, "root", "wrong")
        assert response.status_code == 401 and "Wrong user name or password" in response.text
        assert "farside_console" not in response.headers.get("set-cookie", "")

    def test_the_login_form_needs_its_csrf_token(self, client: TestClient) -> None:
        """A login posted without the form's token (a forged form) is refused even with the right password."""
        response = _login_response(client, "root", PASSWORDS["root"], token="forged")
        assert response.status_code == 403
        assert "farside_console" not in response.headers.get("set-cookie", "")

    def test_next_never_leaves_the_console(self, client: TestClient) -> None:
        """After login the browser goes to a console page only, never to another site."""
        form = client.get("/ui/login")
        response = client.post(
            "/ui/login",
            data={
                "username": "root",
                "password": PASSWORDS["root"],
                "csrf": csrf_of(form.text),
                "next": "//evil.example/ui/",
            },
        )
        assert response.headers["location"] == "/ui/"

    def test_logout_ends_the_xenapi_session(self, client: TestClient, pool_data: Path) -> None:
        """Logging out forgets the cookie's login and logs its XenAPI session out."""
        csrf = log_in(client, "root")
        before = _console_sessions(pool_data)
        assert before
        response = client.post("/ui/logout", data={"csrf": csrf})
        assert response.status_code == 303
        assert client.get("/ui/").status_code == 303
        assert len(_console_sessions(pool_data)) == len(before) - 1

    def test_security_headers(self, client: TestClient) -> None:
        """Console pages forbid framing and inline scripts."""
        response = client.get("/ui/login")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"


def _console_sessions(pool_data: Path) -> list[str]:
    db = Database.open(pool_data / "pool.db")
    try:
        with db.read() as tx:
            return list(tx.find("session", "originator", "farside-console"))
    finally:
        db.close()


def _admin(client: TestClient) -> str:
    return str(xenapi(client, "session.login_with_password", "root", PASSWORDS["root"], "1.0", "tests"))


class TestCsrf:
    def test_a_post_without_the_token_is_refused(self, client: TestClient) -> None:
        """A POST without the login's CSRF token, or with another one, changes nothing."""
        log_in(client, "root")
        assert client.post("/ui/dr/metadata", data={}).status_code == 403
        assert client.post("/ui/dr/metadata", data={"csrf": "forged"}).status_code == 403
        assert client.post("/ui/logout", data={"csrf": "forged"}).status_code == 403
        assert client.get("/ui/").status_code == 200  # still logged in

    def test_a_post_from_another_site_is_refused(self, client: TestClient) -> None:
        """Even with the right token, a POST whose Origin is another site is refused."""
        csrf = log_in(client, "root")
        response = client.post("/ui/logout", data={"csrf": csrf}, headers={"origin": "https://evil.example"})
        assert response.status_code == 403
        assert client.get("/ui/").status_code == 200

    def test_the_token_may_come_as_a_header(self, client: TestClient) -> None:
        """Scripts send the CSRF token as X-CSRF-Token."""
        csrf = log_in(client, "root")
        response = client.post("/ui/logout", headers={"x-csrf-token": csrf})
        assert response.status_code == 303


class TestRoles:
    def test_read_only_sees_everything(self, client: TestClient, tmp_path: Path) -> None:
        """A read-only user reads every page, with no control to change anything."""
        log_in(client, "reader")
        for path in ("/ui/", "/ui/dr", "/ui/history", "/ui/wizard"):
            assert client.get(path).status_code == 200, path
        wizard = client.get("/ui/wizard").text
        assert 'id="not-allowed"' in wizard and 'id="next" disabled' in wizard
        assert 'id="save-metadata"' not in client.get("/ui/dr").text

    def test_read_only_cannot_start_a_run(self, client: TestClient, tmp_path: Path) -> None:
        """The server refuses a read-only user's wizard and DR posts, even with a valid CSRF token."""
        csrf = log_in(client, "reader")
        admin = _admin(client)
        before = xenapi(client, "DR_run.get_all", admin)
        for path, data in (
            ("/ui/wizard/create", {"kind": "test", "lun": str(tmp_path)}),
            ("/ui/wizard/probe", {"kind": "test", "paths": str(tmp_path)}),
            ("/ui/dr/metadata", {}),
        ):
            response = client.post(path, data={"csrf": csrf, **data})
            assert response.status_code == 403, path
            assert "read-only" in response.text
        assert client.get("/ui/wizard/storage?kind=test").status_code == 403
        assert xenapi(client, "DR_run.get_all", admin) == before

    def test_an_operator_configures_metadata_replication(self, client: TestClient, tmp_path: Path) -> None:
        """A pool operator ticks an SR: the pool's metadata is replicated there, and the page says so."""
        admin = _admin(client)
        host = xenapi(client, "host.get_all", admin)[0]
        lun = tmp_path / "lun"
        lun.mkdir()
        sr = xenapi(client, "SR.create", admin, host, {"path": str(lun)}, 0, "web-lun", "", "file", "user", True, {})
        uuid = xenapi(client, "SR.get_uuid", admin, sr)
        csrf = log_in(client, "operator")
        response = client.post("/ui/dr/metadata", data={"csrf": csrf, "sr": uuid})
        assert response.status_code == 303, response.text
        page = client.get(response.headers["location"]).text
        assert "enabled on web-lun" in page and "this pool, written here" in page
        vdis = xenapi(client, "SR.get_VDIs", admin, sr)
        assert [xenapi(client, "VDI.get_type", admin, v) for v in vdis] == ["metadata"]
        # Unticking it stops the replication again.
        response = client.post("/ui/dr/metadata", data={"csrf": csrf})
        assert "stopped on web-lun" in client.get(response.headers["location"]).text
        assert xenapi(client, "SR.get_VDIs", admin, sr) == []
        nine = {"csrf": csrf, "sr": [uuid, *(str(uuidlib.uuid4()) for _ in range(8))]}
        refused = client.post("/ui/dr/metadata", data=nine)
        assert refused.status_code == 409 and "NO_MORE_REDO_LOGS_ALLOWED" in refused.text
        assert xenapi(client, "SR.get_VDIs", admin, sr) == []

    def test_serial_output_needs_what_xenapi_needs(self, client: TestClient) -> None:
        """Serial output is read through the cookie, and needs vm-operator as XenAPI's console does."""
        admin = _admin(client)
        vm = xenapi(client, "VM.create", admin, MINIMAL_VM)
        uuid = xenapi(client, "VM.get_uuid", admin, vm)
        log_in(client, "reader")
        assert client.get(f"/ui/vms/{uuid}/serial.txt").status_code == 409
        log_in(client, "operator")
        assert client.get(f"/ui/vms/{uuid}/serial.txt").status_code == 200
        xenapi(client, "VM.destroy", admin, vm)


class TestServing:
    def test_the_console_is_at_ui(self, client: TestClient) -> None:
        """/ui leads to the console; its script and style are served with their types."""
        assert client.get("/ui").headers["location"].endswith("/ui/")
        script = client.get("/ui/static/console.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert "text/css" in client.get("/ui/static/console.css").headers["content-type"]
