"""A DR run driven step by step, as the terminal and browser wizards drive it: pauses, option
changes between steps, fixes offered by the pre-checks, one engine at a time, mirrors split."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import XenAPI

from farside.dr.context import RunFailed
from farside.dr.runner import Engine
from farside.dr.session import XmlRpcSession
from farside.storage.replication import LunReplication, ReplicationState

from pools import ADMIN_PASSWORD, PoolServer, kill_qemus
from vms import shop_site


def guests(s: XenAPI.Session) -> set[str]:
    """The names of the pool's VMs but its control domain and default templates."""
    records = s.xenapi.VM.get_all_records().values()
    return {r["name_label"] for r in records if not (r["is_control_domain"] or r["is_default_template"])}


def wait(s: XenAPI.Session, task: str) -> str:
    while s.xenapi.task.get_status(task) == "pending":
        time.sleep(0.05)
    return str(s.xenapi.task.get_status(task))


def site_b_with_copy(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> tuple[XenAPI.Session, dict[str, str]]:
    a, b = two_pools
    _, tags = shop_site(a, tmp_path / "lun")
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    a.stop()
    kill_qemus(a.data_dir / "run")
    return b.session(), tags


def test_a_paused_run_takes_new_options_and_the_precheck_fix(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    sb, tags = site_b_with_copy(two_pools, tmp_path)
    options = {
        "luns": str(tmp_path / "copy"),
        "power": "none",
        "pause_after": "discover,load,precheck",
        "declare_site_down": "Site A",
    }
    run = sb.xenapi.DR_run.create("failover", options)
    assert wait(sb, sb.xenapi.Async.DR_run.start(run)) == "success"
    record = sb.xenapi.DR_run.get_record(run)
    assert record["state"] == "paused" and record["runner"] == ""
    steps = json.loads(record["steps"])
    assert [s["replication"] for s in steps["discover"]["data"]["srs"]] == ["unknown"]
    assert "attach" not in steps  # nothing attached while the operator looks
    assert sb.xenapi.SR.get_all() == []

    assert wait(sb, sb.xenapi.Async.DR_run.resume(run)) == "success"
    steps = json.loads(sb.xenapi.DR_run.get_steps(run))
    assert sb.xenapi.DR_run.get_state(run) == "paused" and set(steps) >= {"attach", "choose", "load"}
    assert {v["name"] for v in steps["load"]["data"]["vms"].values()} == set(tags.values())

    # The operator ticks only "lone"; the pre-check refuses the unknown replication state and offers the fix.
    sb.xenapi.DR_run.set_options(run, {**options, "select": "lone"})
    assert wait(sb, sb.xenapi.Async.DR_run.resume(run)) == "failure"
    steps = json.loads(sb.xenapi.DR_run.get_steps(run))
    assert sb.xenapi.DR_run.get_state(run) == "failed"
    fixes = [p["options"] for p in steps["precheck"]["data"]["problems"] if p["options"]]
    assert fixes == [{"confirm_split": "true"}]
    sb.xenapi.DR_run.set_options(run, {**options, "select": "lone", **fixes[0]})
    assert wait(sb, sb.xenapi.Async.DR_run.resume(run)) == "success"
    assert sb.xenapi.DR_run.get_state(run) == "paused"  # after the pre-check, for the last word
    assert wait(sb, sb.xenapi.Async.DR_run.resume(run)) == "success"
    assert sb.xenapi.DR_run.get_state(run) == "done"
    recovered = guests(sb)
    assert recovered == {"lone"}
    report = json.loads(sb.xenapi.DR_run.get_report_json(run))
    assert report["actions"] == [{"action": "Recover VM lone", "result": "Succeeded", "message": ""}]
    assert "Recover VM lone - Succeeded" in sb.xenapi.DR_run.get_report(run)

    # Once recovery has begun, the options are fixed.
    with pytest.raises(XenAPI.Failure) as info:
        sb.xenapi.DR_run.set_options(run, {**options, "select": "shop"})
    assert info.value.details[0] == "OPERATION_NOT_ALLOWED"


def test_bad_options_and_late_changes_are_refused(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    sb, _ = site_b_with_copy(two_pools, tmp_path)
    luns = str(tmp_path / "copy")
    for options, text in [
        ({"luns": luns, "pause_after": "recover"}, "pause_after takes"),
        ({"luns": luns, "colour": "red"}, "unknown options colour"),
    ]:
        with pytest.raises(XenAPI.Failure) as info:
            sb.xenapi.DR_run.create("failover", options)
        assert info.value.details[0] == "INVALID_VALUE" and text in info.value.details[2]
    with pytest.raises(XenAPI.Failure) as info:
        sb.xenapi.DR_run.create("test", {"luns": luns, "split_mirrors": "true"})
    assert "snapshot" in info.value.details[2]
    run = sb.xenapi.DR_run.create("test", {"luns": luns, "pause_after": "discover", "power": "none"})
    assert wait(sb, sb.xenapi.Async.DR_run.start(run)) == "success"
    with pytest.raises(XenAPI.Failure) as info:
        sb.xenapi.DR_run.set_options(run, {"luns": str(tmp_path / "lun"), "power": "none"})
    assert "create a new run" in info.value.details[2]
    # Metadata of a pool that is not on the LUNs.
    sb.xenapi.DR_run.set_options(run, {"luns": luns, "power": "none", "source_pool": "no-such-pool"})
    assert wait(sb, sb.xenapi.Async.DR_run.resume(run)) == "failure"
    assert "no metadata of pool no-such-pool" in sb.xenapi.DR_run.get_report(run)
    sb.xenapi.DR_run.cleanup(run)
    assert sb.xenapi.DR_run.get_state(run) == "cleaned up"


def test_one_engine_at_a_time(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    sb, _ = site_b_with_copy(two_pools, tmp_path)
    run = sb.xenapi.DR_run.create("test", {"luns": str(tmp_path / "copy"), "power": "none"})
    alive = f"{socket.gethostname()}:{os.getpid()}:other"  # this test's own process: alive
    sb.xenapi.DR_run.claim(run, alive)
    with pytest.raises(XenAPI.Failure) as info:
        sb.xenapi.DR_run.start(run)
    assert info.value.details[0] == "DR_RUN_FAILED" or info.value.details[0] == "OPERATION_NOT_ALLOWED"
    assert "being carried out by" in " ".join(info.value.details)
    with pytest.raises(XenAPI.Failure):
        sb.xenapi.DR_run.set_options(run, {"luns": str(tmp_path / "copy")})
    # An engine whose process has ended holds nothing: its claim is taken over at once.
    dead = subprocess.run(["true"], check=True)
    del dead
    gone = f"{socket.gethostname()}:{2**22 + 7}:gone"
    sb.xenapi.DR_run.unclaim(run, alive)
    sb.xenapi.DR_run.claim(run, gone)
    sb.xenapi.DR_run.start(run)
    assert sb.xenapi.DR_run.get_state(run) == "done" and sb.xenapi.DR_run.get_runner(run) == ""
    sb.xenapi.DR_run.cleanup(run)


def test_only_the_claim_holder_saves_the_run(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    """An engine that lost the claim (stalled, taken over) cannot write the run: its late journal
    would overwrite its successor's. The fields are read-only to plain setters too."""
    sb, _ = site_b_with_copy(two_pools, tmp_path)
    run = sb.xenapi.DR_run.create("test", {"luns": str(tmp_path / "copy"), "power": "none"})
    ours, theirs = f"{socket.gethostname()}:{os.getpid()}:ours", f"{socket.gethostname()}:{os.getpid()}:theirs"
    sb.xenapi.DR_run.claim(run, ours)
    sb.xenapi.DR_run.save(run, ours, {"steps": '{"discover": {"state": "started", "data": {}}}'})
    with pytest.raises(XenAPI.Failure) as info:
        sb.xenapi.DR_run.save(run, theirs, {"steps": "{}", "state": "failed"})
    assert info.value.details[0] == "OPERATION_NOT_ALLOWED"
    assert "only the engine holding its claim" in info.value.details[1]
    assert sb.xenapi.DR_run.get_state(run) == "created" and "discover" in sb.xenapi.DR_run.get_steps(run)
    for bad, field in (({"runner": "x"}, "fields"), ({"state": "exploded"}, "state"), ({"steps": "{"}, "steps")):
        with pytest.raises(XenAPI.Failure) as info:
            sb.xenapi.DR_run.save(run, ours, bad)
        assert info.value.details[:2] == ["INVALID_VALUE", field], info.value.details
    with pytest.raises(XenAPI.Failure) as info:
        sb.xenapi.DR_run.set_state(run, "done")
    assert info.value.details[0] == "MESSAGE_METHOD_UNKNOWN"
    sb.xenapi.DR_run.unclaim(run, ours)
    sb.xenapi.DR_run.start(run)  # a fresh engine claims it and carries it out from the saved journal
    assert sb.xenapi.DR_run.get_state(run) == "done"
    sb.xenapi.DR_run.cleanup(run)


class TakenOverAt(XmlRpcSession):
    """A session through which, as the engine saves ``step`` as started, another engine takes the
    run over (as one would once this engine stalled past the claim's 30 s)."""

    def __init__(self, url: str, step: str, other: XenAPI.Session) -> None:
        super().__init__(url, "root", ADMIN_PASSWORD)
        self.step, self.other, self.done = step, other, False

    def call(self, method: str, *args: object) -> object:
        result = super().call(method, *args)
        fields = args[2] if method == "DR_run.save" else {}
        if not self.done and isinstance(fields, dict) and self.step in json.loads(fields.get("steps", "{}")):
            self.done = True
            run = str(args[0])
            self.other.xenapi.DR_run.claim(run, "successor")
            self.other.xenapi.DR_run.save(run, "successor", {"steps": '{"successor": true}'})
        return result


def test_an_engine_taken_over_stops_without_writing(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    sb, _ = site_b_with_copy(two_pools, tmp_path)
    run = sb.xenapi.DR_run.create("test", {"luns": str(tmp_path / "copy"), "power": "none"})
    engine = Engine(TakenOverAt(two_pools[1].url, "discover", sb), run)
    engine.runner = f"{socket.gethostname()}:{2**22 + 9}:stalled"  # a holder the pool sees as gone
    with pytest.raises(RunFailed, match="taken over by another engine"):
        engine.run()
    assert json.loads(sb.xenapi.DR_run.get_steps(run)) == {"successor": True}
    assert sb.xenapi.DR_run.get_state(run) == "running" and sb.xenapi.DR_run.get_runner(run) == "successor"


class Mirrors(LunReplication):
    """Replication as an array would report it (test double): every LUN replicating until split."""

    def __init__(self) -> None:
        self.split_luns: list[Path] = []

    def state(self, lun: Path) -> ReplicationState:
        return ReplicationState.SPLIT if lun in self.split_luns else ReplicationState.REPLICATING

    def split(self, lun: Path) -> None:
        self.split_luns.append(lun)


def test_mirrors_are_split_only_when_the_operator_says_so(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    sb, _ = site_b_with_copy(two_pools, tmp_path)
    b = two_pools[1]
    mirrors = Mirrors()
    options = {"luns": str(tmp_path / "copy"), "power": "none", "declare_site_down": "Site A"}
    run = sb.xenapi.DR_run.create("failover", options)
    with pytest.raises(RunFailed, match="not split: split the mirrors first"):
        Engine(XmlRpcSession(b.url, "root", ADMIN_PASSWORD), run, replication=mirrors).run()
    assert sb.xenapi.SR.get_all() == [] and mirrors.split_luns == []
    sb.xenapi.DR_run.set_options(run, {**options, "split_mirrors": "true"})
    events: list[dict[str, object]] = []
    Engine(XmlRpcSession(b.url, "root", ADMIN_PASSWORD), run, replication=mirrors, on_step=events.append).run()
    assert mirrors.split_luns == [tmp_path / "copy"]
    assert sb.xenapi.DR_run.get_state(run) == "done"
    assert {"step": "split", "state": "done"} in events
    assert {"step": "recover", "state": "progress", "done": 2, "total": 2} in events


def test_a_running_copy_here_is_offered_its_shutdown_as_the_fix(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    from farside.dr.plan import FIX_ACTIONS

    sb, tags = site_b_with_copy(two_pools, tmp_path)
    lone = next(u for u, t in tags.items() if t == "lone")
    options = {"luns": str(tmp_path / "copy"), "confirm_split": "true", "select": "lone", "declare_site_down": "Site A"}
    first = sb.xenapi.DR_run.create("failover", options)
    assert wait(sb, sb.xenapi.Async.DR_run.start(first)) == "success"  # lone now runs at B
    again = sb.xenapi.DR_run.create("failover", options)
    assert wait(sb, sb.xenapi.Async.DR_run.start(again)) == "failure"
    problems = json.loads(sb.xenapi.DR_run.get_steps(again))["precheck"]["data"]["problems"]
    running = next(p for p in problems if "Running in this pool" in p["text"])
    assert running["action"] == {"method": "VM.hard_shutdown", "vm": lone}
    assert running["action"]["method"] in FIX_ACTIONS
    # The wizard makes the call as the operator, then runs the pre-checks again: that problem is gone,
    # and the version rule now speaks (this pool's copy is the newer one).
    sb.xenapi.VM.hard_shutdown(sb.xenapi.VM.get_by_uuid(lone))
    assert wait(sb, sb.xenapi.Async.DR_run.resume(again)) == "failure"
    problems = json.loads(sb.xenapi.DR_run.get_steps(again))["precheck"]["data"]["problems"]
    assert [p["text"] for p in problems if p["severity"] == "error"] == [
        "this pool has a copy at least as new (version rule)"
    ]


def test_a_test_failover_never_replaces_nor_destroys_what_the_pool_had(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    sb, tags = site_b_with_copy(two_pools, tmp_path)
    lone = next(u for u, t in tags.items() if t == "lone")
    luns = str(tmp_path / "copy")
    first = sb.xenapi.DR_run.create(
        "failover",
        {"luns": luns, "confirm_split": "true", "select": "lone", "power": "none", "declare_site_down": "Site A"},
    )
    assert wait(sb, sb.xenapi.Async.DR_run.start(first)) == "success"  # B has its own copy of lone now
    test = sb.xenapi.DR_run.create("test", {"luns": luns, "power": "none"})
    assert wait(sb, sb.xenapi.Async.DR_run.start(test)) == "failure"
    problems = json.loads(sb.xenapi.DR_run.get_steps(test))["precheck"]["data"]["problems"]
    assert [p["text"] for p in problems if p["severity"] == "error"] == [
        "a VM with its uuid is in this pool: a test never replaces one"
    ]
    sb.xenapi.DR_run.cleanup(test)
    # The copy B had before the test is still there, untouched.
    assert sb.xenapi.VM.get_power_state(sb.xenapi.VM.get_by_uuid(lone)) == "Halted"
    assert sb.xenapi.DR_run.get_state(test) == "cleaned up"


def test_mirrors_are_never_split_while_the_source_runs_vms_on_them(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    a, b = two_pools
    sa, tags = shop_site(a, tmp_path / "lun")
    sa.xenapi.VM.start(sa.xenapi.VM.get_by_uuid(next(u for u, t in tags.items() if t == "lone")), False, False)
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    sb = b.session()
    mirrors = Mirrors()
    run = sb.xenapi.DR_run.create("failover", {"luns": str(tmp_path / "copy"), "split_mirrors": "true"})
    source = XmlRpcSession(a.url, "root", ADMIN_PASSWORD)
    with pytest.raises(RunFailed, match="lone still run in the source pool on the LUNs to split"):
        Engine(XmlRpcSession(b.url, "root", ADMIN_PASSWORD), run, replication=mirrors, source=source).run()
    assert mirrors.split_luns == [] and sb.xenapi.SR.get_all() == []


def test_an_abandoned_test_run_never_touches_a_later_failover(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    """A test run left paused holds its LUN (and its DR task): a failover of the same LUN is told to
    clean it up first, instead of taking the task over (which let the test's cleanup destroy the
    failover's VMs); it is refused at its claim, before it attaches anything."""
    sb, _ = site_b_with_copy(two_pools, tmp_path)
    luns = str(tmp_path / "copy")
    test = sb.xenapi.DR_run.create("test", {"luns": luns, "power": "none", "pause_after": "precheck"})
    sb.xenapi.DR_run.start(test)
    assert sb.xenapi.DR_run.get_state(test) == "paused"
    failover = sb.xenapi.DR_run.create(
        "failover", {"luns": luns, "confirm_split": "true", "power": "none", "declare_site_down": "Site A"}
    )
    with pytest.raises(XenAPI.Failure) as info:
        sb.xenapi.DR_run.start(failover)
    test_uuid = sb.xenapi.DR_run.get_uuid(test)
    assert f"in use by the test run {test_uuid} (paused)" in info.value.details[2], info.value.details
    assert "clean it up" in info.value.details[2] and "attach" not in json.loads(sb.xenapi.DR_run.get_steps(failover))
    assert not guests(sb)  # recovered nothing
    sb.xenapi.DR_run.cleanup(test)
    assert sb.xenapi.DR_run.get_state(test) == "cleaned up"
    sb.xenapi.DR_run.resume(failover)  # the LUN is free now
    assert sb.xenapi.DR_run.get_state(failover) == "done"
    recovered = guests(sb)
    assert recovered == {"lone", "shop-db", "shop-web"}
    with pytest.raises(XenAPI.Failure):  # cleaned up once: a second cleanup is refused, touching nothing
        sb.xenapi.DR_run.cleanup(test)
    assert guests(sb) == recovered
