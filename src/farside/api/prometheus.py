"""``GET /metrics``: the sampler's figures and Farside's DR figures in Prometheus' text format (0.0.4).

Who may read (docs/security.md): a session of any role (read-only and stronger) as a ``session_id``
query parameter or cookie, a user's name and password as HTTP basic auth (a session opened and
closed for the request, throttled as any login), or the bearer token in ``DATA_DIR/metrics-token``
when the operator has made that file, mode 0600 (for a scraper that holds no account). Anything else is 401.

Figures: every data source each RRD records (its latest 5 s average, as ``query_data_source``
answers), RPO and last cycle of each storage mirror in the server's mirror state directory, age of
the newest metadata copy on each metadata VDI, duration of the latest DR run of each kind, and the
sampler's own cost.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import time
from base64 import b64decode
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from farside.api.context import Services
from farside.api.http import Endpoint
from farside.api.monitor import HOST_KEY
from farside.api.rrd_http import session_caller
from farside.errors import FarsideError, SessionAuthenticationFailed
from farside.mirror.pair import Mirrors
from farside.model.types import parse_datetime

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TOKEN_FILE = "metrics-token"


class _Exposition:
    """Metric families written in order, each with its HELP and TYPE once."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, doc: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
        self.lines += [f"# HELP {name} {_escape_help(doc)}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{text}}} {_value(value)}" if text else f"{name} {_value(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def metrics(services: Services) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            await _authorise(services, request)
        except FarsideError as exc:
            headers = {"WWW-Authenticate": 'Basic realm="farside", charset="UTF-8"'}
            return PlainTextResponse(" ".join(exc.failure) + "\n", status_code=401, headers=headers)
        return Response(render(services, time.time()), media_type=CONTENT_TYPE)

    return endpoint


async def _authorise(services: Services, request: Request) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer":
        token = _token(services.config.data_dir / TOKEN_FILE)
        if token is None or not hmac.compare_digest(credentials.strip().encode(), token):
            raise SessionAuthenticationFailed("", "the bearer token is not this server's metrics token")
        return
    if scheme.lower() == "basic":
        try:
            user, _, password = b64decode(credentials, validate=True).decode().partition(":")
        except ValueError:
            raise SessionAuthenticationFailed("", "malformed basic credentials") from None
        session = await services.sessions.login(user, password, "metrics")
        services.sessions.logout(session)  # every role may read metrics: the login is the check
        return
    session_caller(services, request, "http/get_metrics")


def _token(path: Path) -> bytes | None:
    """The operator's token, if the file exists, holds one and only its owner may read it (read
    each time: rotating needs no restart)."""
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW)) as fh:
            if os.fstat(fh.fileno()).st_mode & 0o077:
                log.warning("%s is readable by others than its owner: bearer access refused until chmod 600", path)
                return None
            token = fh.read().strip()
    except OSError:
        return None
    return token or None


def render(services: Services, now: float) -> str:
    out = _Exposition()
    _sources(services, out)
    _dr(services, out, now)
    monitor = services.monitor
    out.family(
        "farside_metrics_sampler_cpu_seconds_total", "counter",
        "CPU time the metrics sampler's rounds have used.", [({}, monitor.cpu_seconds)],
    )  # fmt: skip
    out.family(
        "farside_metrics_sampler_vm_samples_total", "counter",
        "VM samples the metrics sampler has taken.", [({}, float(monitor.vm_samples))],
    )  # fmt: skip
    return out.text()


def _sources(services: Services, out: _Exposition) -> None:
    with services.db.read() as tx:
        host_uuid = tx.get_field("host", services.host, "uuid")
        names = {r["uuid"]: r["name_label"] for r in tx.select("VM", ("uuid", "name_label")).values()}
    host = [
        ({"host_uuid": host_uuid, "data_source": ds["name_label"], "units": ds["units"]}, ds["value"])
        for ds in services.monitor.data_sources(HOST_KEY)
        if ds["enabled"]
    ]
    out.family(
        "farside_host_data_source", "gauge",
        "The host's data sources (xapi's names), averaged over the last 5 s.", host,
    )  # fmt: skip
    vms = [
        ({"vm_uuid": uuid, "vm_name": names.get(uuid, ""), "data_source": ds["name_label"], "units": ds["units"]},
         ds["value"])
        for uuid in services.monitor.live_vms()
        for ds in services.monitor.data_sources(uuid)
        if ds["enabled"]
    ]  # fmt: skip
    out.family(
        "farside_vm_data_source", "gauge",
        "Each running VM's data sources (xapi's names), averaged over the last 5 s.", vms,
    )  # fmt: skip


def _dr(services: Services, out: _Exposition, now: float) -> None:
    rpo, cycle = [], []
    mirrors = Mirrors(services.config.mirror_dir)
    for name in mirrors.names():
        try:
            status = mirrors.status(name, now)
        except (FarsideError, OSError, ValueError):
            continue  # deleted or being rewritten as we read: left out of this scrape
        if status["rpo_seconds"] is not None:
            rpo.append(({"mirror": name}, float(status["rpo_seconds"])))
        if status["last_cycle_finished"] and status["last_cycle_started"]:
            cycle.append(({"mirror": name}, status["last_cycle_finished"] - status["last_cycle_started"]))
    out.family(
        "farside_mirror_rpo_seconds", "gauge",
        "Age of the data the mirror's target holds: seconds since its last completed cycle began.", rpo,
    )  # fmt: skip
    out.family("farside_mirror_last_cycle_seconds", "gauge", "Duration of the mirror's last completed cycle.", cycle)
    ages: list[tuple[dict[str, str], float]] = []
    runs: dict[str, tuple[float, dict[str, Any]]] = {}
    with services.db.read() as tx:
        for vdi in tx.find("VDI", "type", "metadata"):
            record = tx.get_record("VDI", vdi)
            written = _epoch(record["sm_config"].get("farside-written", ""))
            if written is not None:
                sr = tx.get_field("SR", record["SR"], "uuid") if tx.exists("SR", record["SR"]) else ""
                ages.append(({"sr_uuid": sr, "vdi_uuid": record["uuid"]}, max(0.0, now - written)))
        for run in tx.get_records("DR_run").values():
            finished, created = _epoch(run["finished"]), _epoch(run["created"])
            if finished is None or created is None or finished < created:
                continue
            latest = runs.get(run["kind"])
            if latest is None or finished > latest[0]:
                runs[run["kind"]] = (finished, run)
    out.family(
        "farside_metadata_age_seconds", "gauge",
        "Age of the newest pool metadata written to each metadata VDI (shown at most every few seconds).", ages,
    )  # fmt: skip
    durations: list[tuple[dict[str, str], float]] = []
    for kind, (finished, run) in sorted(runs.items()):
        created = _epoch(run["created"]) or finished
        durations.append(({"kind": kind, "state": run["state"], "run_uuid": run["uuid"]}, finished - created))
    out.family(
        "farside_dr_run_last_duration_seconds", "gauge", "Duration of the latest DR run of each kind.", durations
    )


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str) or not text or text.startswith("1970"):
        return None
    try:
        return parse_datetime(text).timestamp()
    except ValueError:
        return None
