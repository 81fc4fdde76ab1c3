"""The issue's first promise: a pool made, served, and driven with the official SDK."""

from __future__ import annotations

from pools import PoolServer


def test_sdk_reads_the_pool(server: PoolServer) -> None:
    """The SDK logs in as root and reads the pool's record, named as at init."""
    s = server.session()
    pools = s.xenapi.pool.get_all_records()
    assert [p["name_label"] for p in pools.values()] == ["Site A"]
    s.xenapi.session.logout()
