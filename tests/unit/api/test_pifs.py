"""PIFs kept in step with the host's interfaces: which become PIFs, on which network, and what a
vanished NIC leaves."""

from __future__ import annotations

from typing import Any

from farside.api import pifs
from farside.db import Database
from farside.db.bootstrap import create_pool
from farside.model.host_facts import HostFacts, Interface

HOST = HostFacts("node1", "10.0.0.2", 8 << 30, 6 << 30)
ETH0 = Interface("eth0", "02:00:00:00:00:01", 1500, True, True, "10.0.0.2", "255.255.255.0", "10.0.0.1",
                 default_route=True)  # fmt: skip
ETH1 = Interface("eth1", "02:00:00:00:00:02", 9000, True, False)
BR0 = Interface("br0", "02:00:00:00:00:03", 1500, False, True, "192.168.9.1", "255.255.255.0")


def pool() -> tuple[Database, str]:
    db = Database.in_memory("pool")
    create_pool(db, "Site A", HOST, "pw")
    with db.read() as tx:
        return db, tx.refs("host")[0]


def by_device(db: Database) -> dict[str, dict[str, Any]]:
    with db.read() as tx:
        return {r["device"]: r for r in tx.get_records("PIF").values()}


def test_management_and_other_nics() -> None:
    db, host = pool()
    with db.write() as tx:
        pifs.sync(tx, host, [ETH0, ETH1, BR0], ["10.0.0.53"])
    found = by_device(db)
    assert sorted(found) == ["eth0", "eth1"]  # a bridge is no NIC, and carries no management address
    eth0, eth1 = found["eth0"], found["eth1"]
    assert (eth0["management"], eth0["IP"], eth0["DNS"], eth0["managed"]) == (True, "10.0.0.2", "10.0.0.53", False)
    assert (eth1["management"], eth1["currently_attached"], eth1["MTU"], eth1["DNS"]) == (False, False, 9000, "")
    with db.read() as tx:
        assert tx.get_field("network", eth0["network"], "bridge") == "xenbr0"
        assert tx.get_record("network", eth1["network"])["name_label"] == "Pool-wide network associated with eth1"
        assert tx.get_field("network", eth1["network"], "bridge") == "xenbr1"


def test_a_vanished_nic_stays_detached_and_a_rescan_is_stable() -> None:
    db, host = pool()
    with db.write() as tx:
        pifs.sync(tx, host, [ETH0, ETH1], [])
    before = by_device(db)
    with db.write() as tx:
        pifs.sync(tx, host, [ETH0], [])
    after = by_device(db)
    assert after["eth1"]["currently_attached"] is False and after["eth0"] == before["eth0"]
    with db.read() as tx:
        assert len(tx.refs("network")) == 2  # no second network for eth1


def test_management_falls_back_to_the_default_route() -> None:
    assert pifs.management_device([ETH1, ETH0], "127.0.0.1") == "eth0"
    assert pifs.management_device([ETH1], "127.0.0.1") == "eth1"
    assert pifs.management_device([BR0], "192.168.9.1") == "br0"
    assert pifs.management_device([], "127.0.0.1") is None
