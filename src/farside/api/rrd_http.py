"""xapi's RRD HTTP handlers: ``GET /rrd_updates``, ``GET /vm_rrd`` and ``GET /host_rrd``.

The session travels as xapi's clients send it: a ``session_id`` query parameter or cookie. Each
needs read-only or stronger (xapi's datamodel gives these handlers ``_R_READ_ONLY``). Bad
parameters are HTTP 400, an unknown VM 404, each with the failure as text.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from farside.api.context import Services
from farside.api.http import BadRequest, Endpoint, guarded
from farside.api.monitor import HOST_KEY
from farside.api.sessions import Caller
from farside.errors import RbacPermissionDenied, UuidInvalid
from farside.model.roles import Role
from farside.model.rrd import CF, NoArchive
from farside.model.rrd_export import rrd_xml, updates_json, updates_xml

XML = "text/xml"


def session_caller(services: Services, request: Request, what: str, needed: Role = Role.READ_ONLY) -> Caller:
    """The caller of ``session_id`` (query, else cookie); SESSION_INVALID or RBAC_PERMISSION_DENIED."""
    ref = request.query_params.get("session_id") or request.cookies.get("session_id", "")
    caller = services.sessions.validate(ref)
    if not caller.role.allows(needed):
        raise RbacPermissionDenied(what, f"{caller.user_name} is {caller.role.wire}; this needs {needed.wire}")
    return caller


def _int(request: Request, name: str, default: int | None = None) -> int:
    text = request.query_params.get(name)
    if text is None:
        if default is None:
            raise BadRequest(f"the query parameter {name} is required")
        return default
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {text!r}") from None


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() == "true"


def rrd_updates(services: Services) -> Endpoint:
    """``GET /rrd_updates?session_id=…&start=T``, optionally ``&interval=S``, ``&cf=AVERAGE|MIN|MAX``,
    ``&host=true`` (the host's RRD too), ``&vm_uuid=U`` (that VM only), ``&json=true``."""

    @guarded
    async def endpoint(request: Request) -> Response:
        session_caller(services, request, "http/get_rrd_updates")
        start = _int(request, "start")
        interval = _int(request, "interval", 0)
        cf_text = request.query_params.get("cf")
        try:
            cf = CF(cf_text.upper()) if cf_text else None
        except ValueError:
            raise BadRequest(f"cf must be AVERAGE, MIN or MAX, not {cf_text!r}") from None
        vm_uuid = request.query_params.get("vm_uuid") or None
        if vm_uuid is not None:
            with services.db.read() as tx:
                tx.ref_of_uuid("VM", vm_uuid)
        try:
            found = services.monitor.updates(start, interval, cf, _flag(request, "host"), vm_uuid)
        except NoArchive:
            raise BadRequest("no RRD holds data for this request (is the VM running?)") from None
        if _flag(request, "json"):
            return Response(updates_json(found), media_type="application/json")
        return Response(updates_xml(found), media_type=XML)

    return endpoint


def vm_rrd(services: Services) -> Endpoint:
    """``GET /vm_rrd?session_id=…&uuid=U``: the VM's whole RRD."""

    @guarded
    async def endpoint(request: Request) -> Response:
        session_caller(services, request, "http/get_vm_rrd")
        uuid = request.query_params.get("uuid", "")
        with services.db.read() as tx:
            tx.ref_of_uuid("VM", uuid)
        with services.monitor.rrd(uuid) as rrd:
            if rrd is None:
                raise UuidInvalid("VM", uuid)  # a VM that has never run here has no RRD
            return Response(rrd_xml(rrd), media_type=XML)

    return endpoint


def host_rrd(services: Services) -> Endpoint:
    """``GET /host_rrd?session_id=…``: the host's whole RRD."""

    @guarded
    async def endpoint(request: Request) -> Response:
        session_caller(services, request, "http/get_host_rrd")
        with services.monitor.rrd(HOST_KEY) as rrd:
            if rrd is None:
                raise BadRequest("the host's RRD has no sample yet")
            return Response(rrd_xml(rrd), media_type=XML)

    return endpoint
