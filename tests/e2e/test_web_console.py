"""The web console in a real browser (Debian's chromium, driven by Playwright) against two real
sites: log in, watch the pool change live, run a test failover end to end through the wizard, read
and download its report, clean up; a read-only user cannot start a run.

Screenshots of every wizard page go to $FARSIDE_ARTIFACTS (or the test's tmp directory), printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from farside.model.roles import Role

from pools import ADMIN_PASSWORD, MINIMAL_VM, PoolServer
from vms import shop_site

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
# Generous: the machine is small and shared; nothing here is a timing assertion.
WAIT_MS = 180_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is missing: run `make setup`")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def shots(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    root = Path(os.environ.get("FARSIDE_ARTIFACTS", tmp_path / "artifacts"))
    where = root / request.node.name
    where.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {where}")
    return where


def log_in(page: Page, server: PoolServer, user: str, password: str) -> None:
    page.goto(f"{server.url}/ui/")
    expect(page).to_have_url(f"{server.url}/ui/login?next=/ui/")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page.locator("#who")).to_contain_text(user)


def declare_site_down(page: Page, name: str) -> None:
    """The storage page's fencing proof: the box ticked and the site's name typed in."""
    page.check("#site-down")
    page.fill("#site-down-name", name)


def failover_at_selection(browser: Browser, server: PoolServer, luns: Path) -> Page:
    """A failover wizard as root, past the storage page (LUNs probed and attached), at the selection."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, server, "root", ADMIN_PASSWORD)
    page.goto(f"{server.url}/ui/wizard/storage?kind=failover")
    page.fill("#paths", str(luns))
    page.click("#probe")
    declare_site_down(page, "Site A")
    page.click("#attach")
    page.wait_for_selector("#select-form")
    return page


def test_a_test_failover_through_the_wizard(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path, browser: Browser, shots: Path
) -> None:
    """Log in on site B, see the pool change live, run a test failover of site A's copied LUN page by
    page, read and download the report, clean up, and find the run in the history."""
    a, b = two_pools
    _, tags = shop_site(a, tmp_path / "lun")
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    sb = b.session()
    # Site A at a glance: its SR with the lease, mirror state and metadata replication, its VMs.
    site_a = browser.new_page(viewport={"width": 1280, "height": 900})
    site_a.set_default_timeout(WAIT_MS)
    log_in(site_a, a, "root", ADMIN_PASSWORD)
    expect(site_a.locator("#srs")).to_contain_text("Site A until")  # the lease A holds on its LUN
    expect(site_a.locator("#srs .mirror")).to_have_text("unknown")  # no mirror manages this LUN
    expect(site_a.locator("#srs .metadata")).to_contain_text("this pool's metadata: latest")
    expect(site_a.locator("#vms")).to_contain_text("shop-web")
    site_a.screenshot(path=shots / "site-a-pool.png", full_page=True)
    site_a.click("text=DR configuration")
    expect(site_a.locator("#metadata-srs input[name=sr]")).to_be_checked()
    site_a.screenshot(path=shots / "site-a-dr-configuration.png", full_page=True)
    site_a.close()

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT_MS)
    log_in(page, b, "root", ADMIN_PASSWORD)

    # The pool page follows event.from: a VM made through XenAPI shows without a reload.
    loaded_at = page.evaluate("performance.timeOrigin")
    vm = sb.xenapi.VM.create({**MINIMAL_VM, "name_label": "appears-live"})
    expect(page.locator("#vms")).to_contain_text("appears-live")
    assert page.evaluate("performance.timeOrigin") == loaded_at  # the same document: not reloaded
    sb.xenapi.VM.destroy(vm)
    expect(page.locator("#pool-live")).not_to_contain_text("appears-live")
    page.screenshot(path=shots / "site-b-pool.png", full_page=True)

    # 1. kind
    page.click("text=DR wizard")
    page.check("input[value=test]")
    page.screenshot(path=shots / "1-kind.png", full_page=True)
    page.click("#next")
    # 2. storage: probe the copy, the SR with A's metadata is ticked
    page.fill("#paths", str(tmp_path / "copy"))
    page.click("#probe")
    expect(page.locator("#found-srs")).to_contain_text(str(tmp_path / "copy"))
    expect(page.locator("#found-srs input[name=lun]")).to_be_checked()
    page.screenshot(path=shots / "2-storage.png", full_page=True)
    page.click("#attach")
    # The run attaches the SR and reads the metadata in the server, then pauses for the choice.
    page.wait_for_selector("#select-form")
    expect(page.locator("#metadata-used")).to_contain_text("Site A")
    # 3. vApps and VMs with the power option
    expect(page.locator("#items")).to_contain_text("vApp shop")
    expect(page.locator("#items")).to_contain_text("lone")
    expect(page.locator("input[name=power][value=start]")).to_have_count(0)  # a test never starts VMs running
    page.check("input[name=power][value=start_paused]")
    page.screenshot(path=shots / "3-select.png", full_page=True)
    page.click("#run-prechecks")
    # 4. pre-checks
    page.wait_for_selector("#precheck-ok")
    page.screenshot(path=shots / "4-precheck.png", full_page=True)
    page.click("#recover")
    # 5. recovery with live progress, then 6. the report
    page.screenshot(path=shots / "5-recovery.png", full_page=True)
    page.wait_for_selector("#report")
    report = page.inner_text("#report")
    assert "Test failover (succeeded)" in report and "Site A" in report and "vApp shop: shop-" in report
    assert "Start paused" in report and "recover - Succeeded" in report
    for uuid in tags:
        assert sb.xenapi.VM.get_power_state(sb.xenapi.VM.get_by_uuid(uuid)) == "Paused"
    page.screenshot(path=shots / "6-report.png", full_page=True)
    with page.expect_download() as text_download:
        page.click("#download-text")
    assert text_download.value.path().read_text() == sb.xenapi.DR_run.get_report(sb.xenapi.DR_run.get_all()[0])
    with page.expect_download() as json_download:
        page.click("#download-json")
    downloaded = json.loads(json_download.value.path().read_text())
    assert downloaded["kind"] == "test" and downloaded["outcome"] == "succeeded"

    # The test failover ends with its cleanup, whose result is shown.
    page.click("#cleanup")
    expect(page.locator("#cleanup-result")).to_contain_text("Cleanup: done", timeout=WAIT_MS)
    expect(page.locator("#run-state")).to_have_text("cleaned up")
    page.screenshot(path=shots / "7-cleanup.png", full_page=True)
    assert not set(tags) & {sb.xenapi.VM.get_uuid(v) for v in sb.xenapi.VM.get_all()}

    # History: the run with its recovery time and metadata age, and the trend of test failovers.
    page.click("text=History")
    expect(page.locator("#runs")).to_contain_text("cleaned up")
    expect(page.locator("#trend")).to_have_count(1)
    page.screenshot(path=shots / "8-history.png", full_page=True)


def test_a_read_only_user_cannot_start_a_run(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path, browser: Browser, shots: Path
) -> None:
    """A read-only user sees the wizard disabled, and the server refuses the run even when the
    request is forged with the user's own valid CSRF token."""
    _, b = two_pools
    b.add_user("reader", Role.READ_ONLY, "read-pw")
    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    log_in(page, b, "reader", "read-pw")
    page.goto(f"{b.url}/ui/wizard")
    expect(page.locator("#not-allowed")).to_be_visible()
    expect(page.locator("#next")).to_be_disabled()
    page.screenshot(path=shots / "read-only-wizard.png", full_page=True)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    assert csrf
    answer = page.request.post(
        f"{b.url}/ui/wizard/create", form={"csrf": csrf, "kind": "test", "lun": str(tmp_path)},
        headers={"origin": b.url},
    )  # fmt: skip
    assert answer.status == 403 and "read-only" in answer.text()
    assert page.request.get(f"{b.url}/ui/wizard/storage?kind=test").status == 403
    assert b.session().xenapi.DR_run.get_all() == []


def test_a_precheck_fix_is_one_button(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path, browser: Browser, shots: Path
) -> None:
    """A failover from a LUN nobody here mirrors stops at the pre-checks; the fix's button (the
    operator confirms the mirroring is stopped) runs them again and they pass; abandoning cleans up."""
    a, b = two_pools
    shop_site(a, tmp_path / "lun")
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    page = failover_at_selection(browser, b, tmp_path / "copy")
    page.check("input[name=power][value=none]")
    page.click("#run-prechecks")
    page.wait_for_selector("#precheck-failed")
    expect(page.locator("#problems")).to_contain_text("nobody here manages this LUN's replication")
    expect(page.locator("#recover")).to_have_count(0)  # nothing can be recovered until it is fixed
    page.screenshot(path=shots / "precheck-problem.png", full_page=True)
    page.click("text=I confirm the mirroring is stopped")
    page.wait_for_selector("#recover")
    expect(page.locator("#problems")).to_contain_text("warning")  # still shown, as a warning now
    page.screenshot(path=shots / "precheck-fixed.png", full_page=True)
    sb = b.session()
    run = sb.xenapi.DR_run.get_all()[0]
    assert sb.xenapi.DR_run.get_options(run)["confirm_split"] == "true"
    page.click("#abandon")
    expect(page.locator("#cleanup-result")).to_contain_text("Cleanup: done", timeout=WAIT_MS)
    assert sb.xenapi.DR_task.get_all() == []
    assert all(r["is_control_domain"] or r["is_default_template"] for r in sb.xenapi.VM.get_all_records().values())


def test_a_precheck_fix_can_be_a_call_on_this_pool(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path, browser: Browser, shots: Path
) -> None:
    """A VM with the same uuid runs here: the pre-check's button shuts it down (as the operator), and
    the pre-checks run again (the version rule then speaks: this pool's copy is the newer one)."""
    a, b = two_pools
    _, tags = shop_site(a, tmp_path / "lun")
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    sb = b.session()
    first = sb.xenapi.DR_run.create(
        "failover",
        {"luns": str(tmp_path / "copy"), "confirm_split": "true", "select": "lone", "declare_site_down": "Site A"},
    )
    sb.xenapi.DR_run.start(first)
    lone = sb.xenapi.VM.get_by_uuid(next(u for u, t in tags.items() if t == "lone"))
    assert sb.xenapi.VM.get_power_state(lone) == "Running"
    page = failover_at_selection(browser, b, tmp_path / "copy")
    page.check("input[name=power][value=none]")
    page.click("#run-prechecks")
    page.wait_for_selector("#precheck-failed")
    expect(page.locator("#problems")).to_contain_text("a VM with its uuid is Running in this pool")
    page.screenshot(path=shots / "precheck-running-here.png", full_page=True)
    page.click("text=Shut it down here")
    expect(page.locator("#problems")).to_contain_text("version rule")
    expect(page.locator("#problems")).not_to_contain_text("Running in this pool")
    assert sb.xenapi.VM.get_power_state(lone) == "Halted"
    page.click("#abandon")
    expect(page.locator("#cleanup-result")).to_contain_text("Cleanup: done", timeout=WAIT_MS)


def test_a_failover_from_a_farside_mirror_splits_it(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path, browser: Browser, shots: Path
) -> None:
    """A failover from a LUN that farside mirror still replicates stops before attaching anything;
    the run's page splits the mirror with one button; the failover then recovers the VMs."""
    from farside.mirror.pair import Mirrors

    a, b = two_pools
    _, tags = shop_site(a, tmp_path / "lun")
    mirrors = Mirrors(tmp_path / "mirror-state")
    mirrors.create("shop", tmp_path / "lun", tmp_path / "replica", interval=0)
    mirrors.sync("shop")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, b, "root", ADMIN_PASSWORD)
    page.goto(f"{b.url}/ui/wizard/storage?kind=failover")
    page.fill("#paths", str(tmp_path / "replica"))
    page.click("#probe")
    expect(page.locator("#found-srs")).to_contain_text("replicating")
    declare_site_down(page, "Site A")
    page.click("#attach")
    page.wait_for_selector("#split")
    expect(page.locator("#step-error")).to_contain_text("not split")
    assert b.session().xenapi.SR.get_all() == []  # nothing attached while the mirror runs
    page.screenshot(path=shots / "split-needed.png", full_page=True)
    page.click("#split")
    page.wait_for_selector("#select-form")
    assert mirrors.load("shop").state_enum.value == "split"
    page.check("input[name=power][value=none]")
    page.click("#run-prechecks")
    page.wait_for_selector("#recover")
    page.click("#recover")
    page.wait_for_selector("#report")
    expect(page.locator("#run-state")).to_have_text("done")
    assert "Failover (succeeded)" in page.inner_text("#report")
    sb = b.session()
    assert {sb.xenapi.VM.get_uuid(v) for v in sb.xenapi.VM.get_all()} >= set(tags)
    page.goto(f"{b.url}/ui/")
    expect(page.locator("#srs .mirror")).to_have_text("split")
    page.screenshot(path=shots / "after-failover-pool.png", full_page=True)


def test_a_test_failover_against_a_real_lab(tmp_path: Path, browser: Browser, shots: Path) -> None:
    """`farside lab up`: site A's SR shows its mirror replicating; at site B, a test failover of a
    `farside mirror snapshot` runs through the wizard, its report is read, and it cleans up."""
    root = tmp_path / "lab"

    def farside(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "farside.cli.main", *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        farside("lab", "up", str(root), "--vms", "2", "--vapps", "1", "--luns", "1")
        ports = json.loads((root / "lab.json").read_text())["ports"]
        password = (root / "password").read_text().strip()
        a = PoolServer(root / "site-a", port=int(ports["a"]))
        b = PoolServer(root / "site-b", port=int(ports["b"]))
        site_a = browser.new_page(viewport={"width": 1280, "height": 900})
        site_a.set_default_timeout(WAIT_MS)
        log_in(site_a, a, "root", password)
        expect(site_a.locator("#srs .mirror")).to_have_text("replicating")
        expect(site_a.locator("#vms")).to_contain_text("shop-db")
        site_a.screenshot(path=shots / "lab-site-a-pool.png", full_page=True)
        site_a.close()

        snapshot = root / "snapshots" / "lun1"
        farside("mirror", "snapshot", "lun1", str(snapshot), "--state-dir", str(root / "mirror"))
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(WAIT_MS)
        log_in(page, b, "root", password)
        page.click("text=DR wizard")
        page.check("input[value=test]")
        page.click("#next")
        page.fill("#paths", str(snapshot))
        page.click("#probe")
        page.click("#attach")
        page.wait_for_selector("#select-form")
        expect(page.locator("#items")).to_contain_text("vApp shop")
        page.check("input[name=power][value=start_paused]")
        page.click("#run-prechecks")
        page.wait_for_selector("#precheck-ok")
        page.click("#recover")
        page.wait_for_selector("#report")
        assert "Test failover (succeeded)" in page.inner_text("#report")
        page.screenshot(path=shots / "lab-report.png", full_page=True)
        page.click("#cleanup")
        expect(page.locator("#cleanup-result")).to_contain_text("Cleanup: done", timeout=WAIT_MS)
        status = json.loads(farside("lab", "status", str(root), "--json"))
        assert [m["state"] for m in status["mirrors"]] == ["replicating"]  # replication went on
        assert status["sites"]["b"]["vms"] == [] and status["sites"]["b"]["srs"] == []
    finally:
        subprocess.run([sys.executable, "-m", "farside.cli.main", "lab", "down", str(root)], capture_output=True)


def test_a_failback_while_the_dr_site_runs_the_vms_is_refused(tmp_path: Path, browser: Browser, shots: Path) -> None:
    """Issue 14, 1: a failback through DR_run (XenAPI) or the console while the DR site still runs the
    VMs ended done with two QEMUs per VM. Now the engine's fence step refuses it before anything is
    split or attached, naming the three proofs; declaring that site down is refused while it answers."""
    import XenAPI

    root = tmp_path / "lab"
    mirror = ["--state-dir", str(root / "mirror")]

    def farside(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "farside.cli.main", *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        farside("lab", "up", str(root), "--vms", "2", "--vapps", "1", "--luns", "1")
        ports = json.loads((root / "lab.json").read_text())["ports"]
        password = (root / "password").read_text().strip()
        a = PoolServer(root / "site-a", port=int(ports["a"]))
        b = PoolServer(root / "site-b", port=int(ports["b"]))
        conn_b = ["--server", b.url, "--password-file", str(root / "password")]
        # The story up to the failback: A lost, failover at B (VMs run there), mirror reversed B→A.
        farside("lab", "disaster", str(root))
        farside("dr", "failover", *conn_b, "--lun-dir", str(root / "luns-b"), "--split-mirrors", "--all", "--yes",
                "--declare-site-down", "Site A")  # fmt: skip
        farside("mirror", "reverse", "lun1", *mirror)
        farside("lab", "start", str(root), "a")
        sa, sb = a.session(password=password), b.session(password=password)
        for pbd in sa.xenapi.PBD.get_all():
            sa.xenapi.PBD.unplug(pbd)
        farside("mirror", "resync", "lun1", *mirror)
        running_b = {r["uuid"] for r in sb.xenapi.VM.get_all_records().values() if r["power_state"] == "Running"}
        assert running_b

        luns = str(root / "luns-a")
        refused = sa.xenapi.DR_run.create("failback", {"luns": luns, "split_mirrors": "true"})
        with pytest.raises(XenAPI.Failure) as info:
            sa.xenapi.DR_run.start(refused)
        why = info.value.details[2]
        assert info.value.details[0] == "DR_RUN_FAILED" and why.startswith("fence: nothing shows"), why
        assert "--source-server" in why and "declare_site_down" in why and "other side can no longer write" in why
        steps = json.loads(sa.xenapi.DR_run.get_steps(refused))
        assert steps["fence"]["state"] == "failed" and "split" not in steps and "attach" not in steps
        declared = sa.xenapi.DR_run.create(
            "failback", {"luns": luns, "split_mirrors": "true", "declare_site_down": "Site B", "source_url": b.url}
        )
        with pytest.raises(XenAPI.Failure) as info:
            sa.xenapi.DR_run.start(declared)
        assert f"answers XenAPI at {b.url}" in info.value.details[2], info.value.details

        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(WAIT_MS)
        page.on("dialog", lambda dialog: dialog.accept())
        log_in(page, a, "root", password)
        for declare in (False, True):
            page.goto(f"{a.url}/ui/wizard/storage?kind=failback")
            page.fill("#paths", luns)
            page.fill("input[name=source_url]", b.url)
            page.click("#probe")
            if declare:
                declare_site_down(page, "Site B")
            page.click("#attach")
            page.wait_for_selector("#step-error")
            expected = "answers XenAPI" if declare else "nothing shows that the source site no longer runs the VMs"
            expect(page.locator("#step-error")).to_contain_text(
                f"fence failed: {expected}" if not declare else expected
            )
            page.screenshot(
                path=shots / f"failback-refused-{'declared' if declare else 'no-proof'}.png", full_page=True
            )
        # Nothing moved: no mirror split, nothing plugged or started at A, B runs what it ran.
        assert {m["state"] for m in json.loads(farside("mirror", "status", "--json", *mirror))} == {"replicating"}
        assert not any(sa.xenapi.PBD.get_currently_attached(p) for p in sa.xenapi.PBD.get_all())
        assert {r["power_state"] for r in sa.xenapi.VM.get_all_records().values() if not r["is_control_domain"]} == {
            "Halted"
        }
        now_b = {r["uuid"] for r in sb.xenapi.VM.get_all_records().values() if r["power_state"] == "Running"}
        assert now_b == running_b
    finally:
        subprocess.run([sys.executable, "-m", "farside.cli.main", "lab", "down", str(root)], capture_output=True)
