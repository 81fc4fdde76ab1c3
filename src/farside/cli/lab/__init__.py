"""``farside lab``: two sites on this machine, for demos, tests and benchmarks (DESIGN.md §5).

``up`` makes two pools served on loopback ports, site A's LUN directories with one mirror each to
site B, the mirror daemon, and a running workload at site A with its metadata replicated; ``status``
shows both pools and the mirrors; ``disaster`` hard-stops site A (its server and every QEMU it
runs); ``start SITE`` serves a stopped site again; ``down`` stops everything the lab started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from farside.cli.lab import processes, reflink
from farside.cli.lab.layout import MIRROR_MARKER, SITE_NAMES, SITES, Lab, LabError
from farside.cli.lab.sample import Plan, populate
from farside.dr.session import XmlRpcSession
from farside.errors import XenAPIFailure
from farside.storage import watchdog

MIRROR_INTERVAL_S = 2.0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "lab",
        help="two sites on this machine: pools, mirrored LUNs, a running workload",
        description="Two DR sites on this machine, for demos and tests. See docs/lab.md.",
    )
    sub = p.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    c = sub.add_parser("up", help="make and start both sites, the mirrors and the workload at site A")
    c.add_argument("dir", type=Path, metavar="DIR", help="where the lab lives (new or empty)")
    c.add_argument("--vms", type=int, default=6, help="VMs at site A (default 6)")
    c.add_argument("--vapps", type=int, default=2, help="vApps of two VMs each among them (default 2)")
    c.add_argument("--luns", type=int, default=2, help="LUNs at site A, each mirrored to site B (default 2)")
    reflink_help = "also an XFS LUN in a loop file at site A, where disk copies are reflinks (needs root)"
    c.add_argument("--reflink", action="store_true", help=reflink_help)
    c.set_defaults(run=up)
    c = sub.add_parser("status", help="both pools, their VMs, and each mirror's state and RPO")
    c.add_argument("dir", type=Path, metavar="DIR")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(run=status)
    c = sub.add_parser("disaster", help="hard-stop site A: its server and every QEMU it runs (SIGKILL)")
    c.add_argument("dir", type=Path, metavar="DIR")
    c.set_defaults(run=disaster)
    c = sub.add_parser("start", help="serve a site's pool again (after a disaster)")
    c.add_argument("dir", type=Path, metavar="DIR")
    c.add_argument("site", choices=SITES, help="a or b")
    c.set_defaults(run=start_site)
    c = sub.add_parser("down", help="stop everything the lab started (servers, QEMUs, mirror daemon)")
    c.add_argument("dir", type=Path, metavar="DIR")
    c.add_argument("--purge", action="store_true", help="also delete DIR")
    c.set_defaults(run=down)


def _farside(*args: str) -> str:
    """Run a ``farside`` command; its output, or its one-line complaint as the error."""
    done = subprocess.run(processes.farside_argv(*args), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"farside {' '.join(args[:2])}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As the server binds: connections of the killed server in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def session(lab: Lab, site: str) -> XmlRpcSession:
    return XmlRpcSession(lab.url(site), "root", lab.password())


def _serve(lab: Lab, site: str) -> None:
    data = lab.site_dir(site)
    argv = processes.farside_argv("server", str(data), "--listen", f"127.0.0.1:{lab.ports[site]}")
    log = data / "server.log"
    pid = processes.start(argv, lab.server_pid_file(site), log)
    try:
        processes.wait_http(lab.url(site) + "/", pid)
    except LabError as exc:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise LabError(f"{SITE_NAMES[site]}: {exc}; its log ({log}) ends: {' / '.join(tail) or '(empty)'}") from None


def up(args: argparse.Namespace) -> int:
    root: Path = args.dir.resolve()
    plan = Plan(args.vms, args.vapps)
    if args.luns < 1:
        raise ValueError("--luns must be 1 or more")
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} is not a directory: give a new or empty directory for the lab")
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} is not empty: 'farside lab down {root} --purge' first, or choose a new DIR")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        raise ValueError(f"cannot make {root}: a file is in its path; give a new directory for the lab") from None
    lab = Lab(root, {site: _free_port() for site in SITES}, [f"lun{i + 1}" for i in range(args.luns)], args.reflink)
    lab.save()
    (root / "snapshots").mkdir()  # where 'farside mirror snapshot' copies go for test failovers (docs/lab.md)
    fd = os.open(lab.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(12) + "\n")
    try:
        for site in SITES:
            lab.luns_dir(site).mkdir()
            # Each site's SRs live in its own LUN directories and the snapshots; the other site is on loopback.
            roots = ["--lun-root", str(lab.luns_dir(site)), "--lun-root", str(root / "snapshots")]
            # From the file: a random password may start with "-", and argv is public (ps).
            _farside("init", str(lab.site_dir(site)), "--pool-name", SITE_NAMES[site],
                     "--admin-password-file", str(lab.password_file), *roots,
                     "--allow-source", "127.0.0.1")  # fmt: skip
            _serve(lab, site)
            print(f"{SITE_NAMES[site]}: serving {lab.url(site)}")
        _pair(lab)
        populate(session(lab, "a"), [lab.lun_dir("a", lun) for lun in lab.luns], plan)
        vapps = f"{plan.vapps} vApp{'' if plan.vapps == 1 else 's'}"
        print(f"Site A: {plan.vms} VMs running, {vapps}, metadata replicated on {len(lab.luns)} SRs")
        state = str(lab.mirror_dir)
        for lun in lab.luns:
            _farside("mirror", "create", lun, "--source", str(lab.lun_dir("a", lun)),
                     "--target", str(lab.lun_dir("b", lun)), "--target-pool", str(lab.site_dir("b")),
                     "--interval", str(MIRROR_INTERVAL_S),
                     "--state-dir", state)  # fmt: skip
            _farside("mirror", "sync", lun, "--state-dir", state)
        processes.start(processes.farside_argv("mirror", "run", "--state-dir", state), lab.mirror_pid_file,
                        lab.mirror_dir / "mirror.log")  # fmt: skip
        print(f"mirrors {', '.join(lab.luns)}: site A → site B, replicating every {MIRROR_INTERVAL_S:g} s")
        if lab.reflink:
            mount = reflink.make(lab)
            host = session(lab, "a").call("host.get_all")[0]
            session(lab, "a").call("SR.create", host, {"path": str(mount)}, "0", reflink.SR_NAME,
                                   "XFS in a loop file: copies are reflinks", "file", "user", True, {})  # fmt: skip
            print(f"Site A: SR {reflink.SR_NAME!r} on XFS in {reflink.image_path(lab)}, mounted on {mount}")
    except BaseException:
        _stop_all(lab)
        raise
    print(f"\nThe lab is up in {root}. Talk to it with:")
    for site in SITES:
        print(f"  {SITE_NAMES[site]}: --server {lab.url(site)} --user root --password-file {lab.password_file}")
    print(f"  mirrors:  farside mirror status --state-dir {state}")
    return 0


def _pair(lab: Lab) -> None:
    """Each site trusts the other's DR key, so a failover and a failback find authenticated metadata."""
    for source, dest in (("a", "b"), ("b", "a")):
        key_file = lab.root / f".dr-key-{source}"
        out = _farside("pool", "dr-key", "export", str(lab.site_dir(source)), "--out", str(key_file))
        found = re.search(r"DR key of pool (\S+) ", out)
        if found is None:
            raise LabError(f"cannot pair the sites: 'farside pool dr-key export' said {out.strip()!r}")
        _farside("pool", "dr-key", "trust", str(lab.site_dir(dest)), "--pool-uuid", found[1],
                 "--key-file", str(key_file))  # fmt: skip
        key_file.unlink()  # a secret: kept only in the two data directories
    print("Site A and Site B: paired (each trusts the other's DR key)")


def _mirrors(lab: Lab) -> list[dict[str, Any]]:
    if not lab.mirror_dir.exists():
        return []
    out = _farside("mirror", "status", "--json", "--state-dir", str(lab.mirror_dir))
    data = json.loads(out)
    return list(data if isinstance(data, list) else data.get("mirrors", [data]))


def _site(lab: Lab, site: str) -> dict[str, Any]:
    pid = processes.running(lab.server_pid_file(site), lab.server_marker(site))
    info: dict[str, Any] = {"name": SITE_NAMES[site], "url": lab.url(site), "server": "up" if pid else "down"}
    if pid is None:
        return info
    try:
        s = session(lab, site)
        records = s.call("VM.get_all_records")
        srs = s.call("SR.get_all_records")
        pbds = s.call("PBD.get_all_records")
    except (XenAPIFailure, OSError) as exc:
        info["error"] = str(exc)
        return info
    info["vms"] = sorted(
        ({"name": r["name_label"], "power_state": r["power_state"]} for r in records.values()
         if not (r["is_a_template"] or r["is_control_domain"])), key=lambda v: v["name"],
    )  # fmt: skip
    info["srs"] = sorted(
        ({"name": r["name_label"], "plugged": any(pbds[p]["currently_attached"] for p in r["PBDs"] if p in pbds)}
         for r in srs.values()), key=lambda v: v["name"],
    )  # fmt: skip
    return info


def status(args: argparse.Namespace) -> int:
    lab = Lab.load(args.dir)
    sites = {site: _site(lab, site) for site in SITES}
    mirrors = _mirrors(lab)
    daemon = processes.running(lab.mirror_pid_file, MIRROR_MARKER) is not None
    if args.json:
        print(json.dumps({"sites": sites, "mirrors": mirrors, "mirror_daemon": daemon}, indent=2, sort_keys=True))
        return 0
    for info in sites.values():
        trouble = f"  ({info['error']})" if "error" in info else ""
        print(f"{info['name']}  {info['url']}  server {info['server']}{trouble}")
        for sr in info.get("srs", []):
            print(f"  SR {sr['name']:<20} {'plugged' if sr['plugged'] else 'unplugged'}")
        for vm in info.get("vms", []):
            print(f"  VM {vm['name']:<20} {vm['power_state']}")
    print(f"mirror daemon {'running' if daemon else 'stopped'}")
    for m in mirrors:
        rpo = m.get("rpo_seconds")
        age = "-" if rpo is None else f"{rpo:.1f} s"
        print(f"  mirror {m.get('name', '?'):<10} {m.get('state', '?'):<12} RPO {age}")
        print(f"         {m.get('source', '')} → {m.get('target', '')}")
    return 0


def disaster(args: argparse.Namespace) -> int:
    lab = Lab.load(args.dir)
    server = processes.stop(lab.server_pid_file("a"), lab.server_marker("a"), signal.SIGKILL)
    killed = processes.kill_qemus(lab.site_dir("a") / "run")
    print(f"Site A is down: server {'killed' if server else 'was not running'}, {len(killed)} QEMU processes killed")
    return 0


def start_site(args: argparse.Namespace) -> int:
    lab = Lab.load(args.dir)
    if processes.running(lab.server_pid_file(args.site), lab.server_marker(args.site)) is not None:
        print(f"{SITE_NAMES[args.site]} is already serving {lab.url(args.site)}")
        return 0
    if not _port_free(lab.ports[args.site]):
        # Something else took the site's port while it was down: serve on another, and say so
        # (lab.json is what every lab command and the demo read the address from).
        old = lab.url(args.site)
        lab.ports[args.site] = _free_port()
        lab.save()
        print(f"{old} is taken by another program: {SITE_NAMES[args.site]} moves to {lab.url(args.site)}")
    _serve(lab, args.site)
    print(f"{SITE_NAMES[args.site]}: serving {lab.url(args.site)}")
    return 0


def _stop_all(lab: Lab) -> list[str]:
    stopped = []
    if processes.stop(lab.mirror_pid_file, MIRROR_MARKER):
        stopped.append("mirror daemon")
    for site in SITES:
        if processes.stop(lab.server_pid_file(site), lab.server_marker(site)):
            stopped.append(f"{SITE_NAMES[site]} server")
        run = lab.site_dir(site) / "run"
        qemus = processes.kill_qemus(run)
        if qemus:
            stopped.append(f"{len(qemus)} QEMUs of {SITE_NAMES[site]}")
        # With no server and no VM it has nothing left to fence: stopped now rather than a moment later.
        processes.stop(run / watchdog.LOCK_FILE, "watchdog")
        if run.is_symlink():  # the short run directory a long data path needs lives in /tmp
            shutil.rmtree(run.resolve(), ignore_errors=True)
            run.unlink()
    # Last: nothing has its files open any more, and a purge must not delete into a mount.
    if reflink.remove(lab):
        stopped.append("reflink LUN (unmounted, loop device detached)")
    return stopped


def down(args: argparse.Namespace) -> int:
    root: Path = args.dir.resolve()
    if not (root / "lab.json").exists():
        if args.purge and root.exists():
            raise ValueError(f"{root} holds no lab; not deleting it")
        print(f"no lab in {root}: nothing to stop")
        return 0
    try:
        lab = Lab.load(root)
    except ValueError:
        # A damaged lab.json must not keep its processes running: their pid files are at fixed
        # places below DIR, and stopping needs no port or LUN name.
        lab = Lab(root)
    stopped = _stop_all(lab)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    if args.purge:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(root)
        print(f"deleted {root}")
    return 0
