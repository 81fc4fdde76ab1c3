"""JSON-RPC as xapi serves it on ``/jsonrpc``: version 1.0 and 2.0 envelopes (xenapi-dr.md §7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from farside.api import xmlrpc


class MalformedRequest(ValueError):
    """The body is not a JSON-RPC request object."""


@dataclass(frozen=True)
class Request:
    method: str
    params: list[Any]
    id: Any
    v2: bool


def parse_request(body: bytes) -> Request:
    """The request in ``body``.

    Raises:
        MalformedRequest: not JSON, not an object, or missing a method or a usable params list.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedRequest("a JSON-RPC request must be a JSON object")
    method = data.get("method")
    if not isinstance(method, str) or not method:
        raise MalformedRequest("the JSON-RPC request has no method")
    params = data.get("params", [])
    if not isinstance(params, list):
        raise MalformedRequest("JSON-RPC params must be a list (positional), as xapi takes them")
    if xmlrpc.nesting(params) > xmlrpc.MAX_NESTING:
        raise MalformedRequest(f"values nest deeper than {xmlrpc.MAX_NESTING} levels")
    ident = data.get("id")
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, str | int | float)):
        raise MalformedRequest("a JSON-RPC id must be a string, a number or null")
    v2 = data.get("jsonrpc") == "2.0"
    if v2 and data.get("id") is None:
        raise MalformedRequest("a JSON-RPC 2.0 request to xapi needs a non-null id")
    return Request(method, params, data.get("id"), v2)


def success(request: Request, result_json: bytes) -> bytes:
    """A response carrying ``result_json``, an already encoded JSON value."""
    head, tail = envelope(request)
    return b"".join((head, result_json, tail))


def envelope(request: Request) -> tuple[bytes, bytes]:
    """What a success response puts before and after its result."""
    ident = orjson.dumps(request.id)
    if request.v2:
        return b'{"jsonrpc":"2.0","result":', b',"id":' + ident + b"}"
    return b'{"result":', b',"error":null,"id":' + ident + b"}"


def failure(request: Request, description: list[str]) -> bytes:
    """A failure response in the request's version."""
    if request.v2:
        error = {"code": 1, "message": description[0], "data": description[1:]}
        return orjson.dumps({"jsonrpc": "2.0", "error": error, "id": request.id})
    return orjson.dumps({"result": None, "error": description, "id": request.id})


def encode(value: Any) -> bytes:
    return orjson.dumps(value)
