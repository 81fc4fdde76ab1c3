"""`make demo`'s story runs in CI: the whole two-site failover and failback, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "demo" / "two_sites.py"


def test_the_demo_tells_the_whole_story() -> None:
    done = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout
    assert "The demo succeeded." in out
    for step in range(1, 10):
        assert f"\n=== {step}. " in out
    # The failover booted the VMs from the mirrored disks, and every run has its report.
    assert "serial: BOOT shop-db" in out
    for title in ("failover at site B", "failback at site A", "test at site B"):
        assert f"--- Report: {title}" in out
    assert "stopped: mirror daemon" in out  # the lab is taken down
