"""The host's interfaces read from a /sys/class/net and /proc/net tree."""

from __future__ import annotations

from pathlib import Path

from farside.hypervisor import netif


def fake_host(tmp_path: Path) -> tuple[Path, Path]:
    sys_net, proc = tmp_path / "net", tmp_path / "proc"
    for name, mac, physical, state in (("eth0", "02:00:00:00:00:01", True, "up"), ("eth1", "02:00:00:00:00:02", True,
                                        "down"), ("br0", "02:00:00:00:00:03", False, "up"), ("lo", "00:00:00:00:00:00",
                                        False, "unknown")):  # fmt: skip
        d = sys_net / name
        d.mkdir(parents=True)
        (d / "address").write_text(mac + "\n")
        (d / "mtu").write_text("1500\n")
        (d / "operstate").write_text(state + "\n")
        if physical:
            (d / "device").mkdir()
    proc.mkdir()
    (proc / "route").write_text(
        "Iface\tDestination\tGateway \tFlags\n"
        "eth0\t00000000\t0100A8C0\t0003\n"  # default via 192.168.0.1
        "eth0\t0000A8C0\t00000000\t0001\n"
    )
    (proc / "if_inet6").write_text(
        "fd000000000000000000000000000002 04 40 00 80     eth0\n"
        "fe800000000000000000000000000001 04 40 20 80     eth0\n"  # link-local: left out
    )
    return sys_net, proc


def test_interfaces(tmp_path: Path) -> None:
    sys_net, proc = fake_host(tmp_path)
    found = {i.device: i for i in netif.interfaces(sys_net, proc)}
    assert sorted(found) == ["br0", "eth0", "eth1"]  # never loopback
    eth0 = found["eth0"]
    assert (eth0.mac, eth0.mtu, eth0.physical, eth0.up) == ("02:00:00:00:00:01", 1500, True, True)
    assert (eth0.gateway, eth0.default_route, eth0.ipv6) == ("192.168.0.1", True, ("fd00::2/64",))
    assert not found["eth1"].up and not found["br0"].physical and not found["eth1"].default_route


def test_nameservers(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# comment\nsearch example.org\nnameserver 10.0.0.53\nnameserver fd00::53\n")
    assert netif.nameservers(resolv) == ["10.0.0.53", "fd00::53"]
    assert netif.nameservers(tmp_path / "missing") == []
