"""A console page or report about a run the pool does not have: 404 with a clear message, as
HTML for pages and as JSON for .json, never a raw XenAPI failure."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from farside.config import ServerConfig
from farside.server import build_app

from pools import ADMIN_PASSWORD, make_pool

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("web") / "pool"
    make_pool(data)
    with TestClient(build_app(ServerConfig(data)), follow_redirects=False) as c:
        form = c.get("/ui/login")
        data_ = {"username": "root", "password": ADMIN_PASSWORD, "csrf": _CSRF.findall(form.text)[0], "next": "/ui/"}
        assert c.post("/ui/login", data=data_).status_code == 303
        yield c


def test_an_unknown_run_page_is_not_found(client: TestClient) -> None:
    for path in ("/ui/runs/nosuch", "/ui/runs/nosuch/report.txt"):
        page = client.get(path)
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        assert "There is no DR run nosuch in this pool: the History page lists them." in page.text
        assert "UUID_INVALID" not in page.text


def test_an_unknown_runs_json_report_is_json(client: TestClient) -> None:
    answer = client.get("/ui/runs/nosuch/report.json")
    assert answer.status_code == 404 and answer.headers["content-type"] == "application/json"
    assert answer.json()["error"] == "There is no DR run nosuch in this pool: the History page lists them."
