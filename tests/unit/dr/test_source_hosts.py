"""source_url's host rules: what allowed_source_hosts may hold, and which URLs are refused unasked."""

from __future__ import annotations

import pytest

from farside.dr.session import check_source_host, source_host, source_hosts
from farside.errors import InvalidValue


def test_hosts_are_kept_in_one_spelling() -> None:
    assert source_hosts(["Site-A.Example", "site-a.example", "[::1]", "127.0.0.1"]) == [
        "site-a.example",
        "::1",
        "127.0.0.1",
    ]


@pytest.mark.parametrize("bad", ["", "http://a", "a:8440", "a/b", "*.example", "-a", "a b", "a..b"])
def test_anything_but_a_host_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        source_host(bad)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8440/",  # not listed
        "https://evil.example/",
        "ftp://site-a.example/",
        "http://root:pw@site-a.example/",
        "http://site-a.example:notaport/",
        "http://[::1",
        "site-a.example:8440",
    ],
)
def test_urls_are_refused_before_any_connection(url: str) -> None:
    with pytest.raises(InvalidValue) as info:
        check_source_host(url, ["site-a.example"])
    assert info.value.failure[:2] == ["INVALID_VALUE", "source_url"]


def test_listed_hosts_pass() -> None:
    check_source_host("https://Site-A.example:8440/", ["site-a.example"])
    check_source_host("http://[::1]:8440", ["::1"])
