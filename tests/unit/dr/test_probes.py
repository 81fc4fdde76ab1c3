"""Readiness probes: parsing what a VM's metadata names, and waiting on real sockets on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from farside.dr import probes
from farside.dr.probes import Defaults, Probe, ProbeError

from listeners import web_server

LOOPBACK = frozenset({"127.0.0.1"})


class _Serial:
    """The one thing a probe asks of a session: the VM's serial output (a fake, unit tests only)."""

    def __init__(self, output: bytes = b"") -> None:
        self.output = output
        self.reads = 0

    def serial(self, vm_uuid: str) -> bytes:
        self.reads += 1
        return self.output


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def web() -> Iterator[str]:
    with web_server() as url:
        yield url


def test_parse_names_each_kind_with_its_defaults() -> None:
    defaults = Defaults(timeout=30, policy="fail")
    assert probes.parse({}, defaults) is None
    assert probes.parse({"farside-ready-serial": "BOOT web"}, defaults) == Probe("serial", "BOOT web", 30, "fail")
    assert probes.parse({"farside-ready": "serial:up: yes"}, defaults) == Probe("serial", "up: yes", 30, "fail")
    assert probes.parse({"farside-ready": "tcp:[::1]:22"}, defaults) == Probe("tcp", "[::1]:22", 30, "fail")
    tuned = {"farside-ready": "http://web.example:8080/health#204", "farside-ready-timeout": "5",
             "farside-ready-policy": "continue"}  # fmt: skip
    assert probes.parse(tuned, defaults) == Probe("http", "http://web.example:8080/health#204", 5, "continue")
    # The newer key wins over the older spelling.
    both = {"farside-ready": "tcp:10.0.0.5:80", "farside-ready-serial": "BOOT web"}
    assert probes.parse(both, defaults) == Probe("tcp", "10.0.0.5:80", 30, "fail")


@pytest.mark.parametrize(
    "config",
    [
        {"farside-ready": "ping:web"},
        {"farside-ready": "serial:"},
        {"farside-ready": "tcp:web"},
        {"farside-ready": "tcp:web:0"},
        {"farside-ready": "tcp::80"},
        {"farside-ready": "https://web/"},
        {"farside-ready": "http://user:pw@web/"},
        {"farside-ready": "http://web:99999/"},
        {"farside-ready": "http://web/#ok"},
        {"farside-ready-serial": "BOOT", "farside-ready-timeout": "1e9"},
        {"farside-ready-serial": "BOOT", "farside-ready-timeout": "-1"},
        {"farside-ready-serial": "BOOT", "farside-ready-timeout": "soon"},
        {"farside-ready-serial": "BOOT", "farside-ready-policy": "retry"},
    ],
)
def test_parse_refuses_what_is_not_a_probe(config: dict[str, str]) -> None:
    with pytest.raises(ProbeError):
        probes.parse(config, Defaults())


def test_serial_probe_waits_for_its_line() -> None:
    console = _Serial(b"SeaBIOS\r\n")
    probe = Probe("serial", "BOOT web", 0.3, "continue")
    assert probes.wait(probe, console, "uuid", Defaults()) == "serial line 'BOOT web' not seen within 0.3 s"  # type: ignore[arg-type]
    assert console.reads > 1  # it polled, it did not give up at the first look
    console.output += b"BOOT web\r\n"
    assert probes.wait(probe, console, "uuid", Defaults()) == ""  # type: ignore[arg-type]


def test_tcp_probe_sees_a_listener_and_times_out_without_one(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    up = Probe("tcp", f"127.0.0.1:{port}", 5, "continue")
    assert probes.wait(up, _Serial(), "uuid", Defaults(hosts=LOOPBACK)) == ""  # type: ignore[arg-type]
    listener.close()
    down = Probe("tcp", f"127.0.0.1:{port}", 0.5, "continue")
    assert "not seen within 0.5 s" in probes.wait(down, _Serial(), "uuid", Defaults(hosts=LOOPBACK))  # type: ignore[arg-type]


def test_http_probe_checks_the_status(web: str) -> None:
    defaults = Defaults(hosts=LOOPBACK)
    assert probes.wait(Probe("http", f"{web}/health", 5, "continue"), _Serial(), "u", defaults) == ""  # type: ignore[arg-type]
    assert probes.wait(Probe("http", f"{web}/starting#503", 5, "continue"), _Serial(), "u", defaults) == ""  # type: ignore[arg-type]
    starting = probes.wait(Probe("http", f"{web}/starting", 0.5, "continue"), _Serial(), "u", defaults)  # type: ignore[arg-type]
    assert "not seen within 0.5 s" in starting


def test_network_probe_reaches_only_the_runs_probe_hosts(listener: socket.socket) -> None:
    """Metadata from the other site must not make this site connect wherever it names."""
    port = listener.getsockname()[1]
    listener.settimeout(0.5)
    probe = Probe("tcp", f"127.0.0.1:{port}", 5, "continue")
    why = probes.wait(probe, _Serial(), "uuid", Defaults(hosts=frozenset({"10.1.1.1"})))  # type: ignore[arg-type]
    assert why == f"tcp 127.0.0.1:{port} not tried: 127.0.0.1 is not in the run's probe_hosts"
    with pytest.raises(TimeoutError):
        listener.accept()  # nothing connected


def test_a_stopped_run_ends_the_wait() -> None:
    probe = Probe("serial", "BOOT web", 60, "continue")
    why = probes.wait(probe, _Serial(), "uuid", Defaults(), stopped=lambda: True)  # type: ignore[arg-type]
    assert why == "serial line 'BOOT web': the run stopped before it answered"
