"""Fuzzing the wire: random and mutated XML-RPC and JSON-RPC bodies never break a real server.

Every answer is held to the same rules: never a 5xx, never a traceback in the body, a 200 is a
well-formed XenAPI envelope (and never INTERNAL_ERROR, which the dispatcher keeps for bugs), a 4xx
has a readable text body; and after every example the server still answers a valid call. One
server serves the whole module. ``FARSIDE_SOAK=1`` (``make soak``) runs ten times the examples.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import xml.parsers.expat
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
import XenAPI
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

import farside.api.handlers  # noqa: F401 - fills the registry of hand-written handlers
from farside.api.registry import HANDLERS
from farside.config import DEFAULT_MAX_BODY_BYTES
from farside.model import STORED
from farside.model.messages import lookup, role_table
from farside.model.types import (
    BoolType,
    DateTimeType,
    EnumType,
    FloatType,
    IntType,
    MapType,
    OptionType,
    RecordType,
    RefType,
    SetType,
    StringType,
    XType,
)

from pools import ADMIN_PASSWORD, PoolServer

pytestmark = pytest.mark.e2e

SOAK = 10 if os.environ.get("FARSIDE_SOAK") == "1" else 1
XML_PATHS = ("/", "/RPC2", "/xmlrpc")
JSON_PATH = "/jsonrpc"
METHODS = sorted(role_table())
LOGIN = "session.login_with_password"
# Hand-written handlers whose work stays inside the pool database. The others (VM power
# operations, SR and PBD work, disk images) start processes or write outside the server's
# directory: fuzzed calls to them, and to handlers added later until someone reviews them here,
# never carry a valid session, so they are checked as far as the session and never run.
CONTAINED = {
    "event.from", "event.get_current_id", "event.inject",
    "session.change_password", "session.logout",
    "task.cancel", "task.create", "task.destroy", "task.set_error_info", "task.set_progress",
    "task.set_result", "task.set_status",
    "VM.create", "VM.destroy", "VM.set_appliance", "VM.set_ha_restart_priority", "VM.set_order",
    "VM.set_shutdown_delay", "VM.set_start_delay",
    "VM_appliance.destroy", "network.create", "network.destroy", "VBD.create", "VIF.create",
    "SR.get_supported_types", "SR.introduce", "SR.set_name_label", "SR.set_name_description",
    "VDI.set_name_label", "VDI.set_name_description", "VDI.set_read_only", "VDI.set_sharable",
}  # fmt: skip


def fuzz(examples: int) -> settings:
    """Settings for one fuzz test: ``examples`` by default, ten times that when soaking."""
    return settings(
        max_examples=examples * SOAK,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# --- placeholders for what only the running server knows --------------------------------------


@dataclass(frozen=True)
class Live:
    """A live object's ref (of ``cls``, if the server holds one), by index; -1 is the fuzzing session.

    The only session a fuzzed call ever names is the fuzzing session: any other could be logged out.
    """

    index: int
    cls: str | None = None


SESSION = Live(-1)


# --- the server, and the checks every answer must pass ----------------------------------------


class Wire:
    """The shared server, a session for fuzzed calls, and the refs of objects it holds."""

    def __init__(self, server: PoolServer) -> None:
        self.server = server
        self.sdk = server.session()  # for setting the scene; no fuzzed call can end it
        self.session = server.session()._session
        self.refs: dict[str, list[str]] = {}

    def __repr__(self) -> str:
        # Not a dataclass: Hypothesis would print the SDK session field by field, and every
        # attribute of an SDK session is a remote call.
        return f"Wire({self.server.url})"

    def post(self, path: str, body: bytes) -> httpx.Response:
        return self.server.post(path, body)

    def login(self) -> str:
        # From an address of its own: fuzzed logins fail from 127.0.0.1 and get it throttled.
        body = xmlrpc.client.dumps(("root", ADMIN_PASSWORD, "1.0", "fuzz"), LOGIN)
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=30) as client:
            answer = xml_envelope(client.post(self.server.url + "/", content=body.encode()))
        assert answer["Status"] == "Success", answer
        return str(answer["Value"])

    def bind(self, value: Any) -> Any:
        """``value`` with every Live placeholder replaced by a real ref."""
        if isinstance(value, Live):
            if value.index < 0 or value.cls == "session":
                return self.session
            refs = self.refs.get(value.cls or "") or [r for rs in self.refs.values() for r in rs]
            return refs[value.index % len(refs)]
        if isinstance(value, list):
            return [self.bind(v) for v in value]
        if isinstance(value, dict):
            return {self.bind(k): self.bind(v) for k, v in value.items()}
        return value

    def disarm(self, method: Any, params: Any) -> None:
        """No valid session for a message that reaches beyond the database (see CONTAINED)."""
        name = method.removeprefix("Async.") if isinstance(method, str) else ""
        if name not in HANDLERS or name in CONTAINED or not isinstance(params, list) or not params:
            return
        if isinstance(params[0], str) and params[0] in (self.session, self.sdk._session):
            params[0] = "OpaqueRef:NULL"

    def still_answers(self) -> None:
        """A valid pool.get_all answers Success (after a new login, if a fuzzed call ended the session)."""
        for _ in range(2):
            body = xmlrpc.client.dumps((self.session,), "pool.get_all").encode()
            answer = xml_envelope(self.post("/", body))
            if answer["Status"] == "Success":
                assert isinstance(answer["Value"], list) and len(answer["Value"]) == 1
                return
            assert answer["ErrorDescription"][0] == "SESSION_INVALID", answer
            self.session = self.login()
        raise AssertionError("a fresh session is refused")

    def restock(self) -> None:
        """Objects of the classes clients create (fuzzed calls destroy some), and the refs of all."""
        api = self.sdk.xenapi
        gib = str(2**30)
        memory = {f"memory_{m}": gib for m in ("static_min", "static_max", "dynamic_min", "dynamic_max")}
        vm = {"name_label": "fuzz", "VCPUs_max": "1", "VCPUs_at_startup": "1", **memory}
        cd = {"VDI": "OpaqueRef:NULL", "userdevice": "3", "type": "CD", "mode": "RO", "empty": True}
        steps: list[tuple[str, Callable[[], object]]] = [
            ("VM", lambda: api.VM.create(vm)),
            ("VM", lambda: api.VM.create(vm)),
            ("network", lambda: api.network.create({"name_label": "fuzz"})),
            ("VM_appliance", lambda: api.VM_appliance.create({"name_label": "fuzz"})),
            ("task", lambda: api.task.create("fuzz", "")),
            ("VIF", lambda: api.VIF.create({"VM": api.VM.get_all()[0], "network": api.network.get_all()[0],
                                            "device": "0", "MTU": "1500"})),
            ("VBD", lambda: api.VBD.create({"VM": api.VM.get_all()[0], **cd})),
        ]  # fmt: skip
        made: dict[str, int] = {}
        for cls, step in steps:
            made[cls] = made.get(cls, 0) + 1
            if len(getattr(api, cls).get_all()) < made[cls]:
                with contextlib.suppress(XenAPI.Failure, IndexError):  # things to aim at: best effort
                    step()
        for method in METHODS:
            cls, _, name = method.partition(".")
            if name == "get_all":
                self.refs[cls] = getattr(api, cls).get_all()


@pytest.fixture(scope="module")
def wire(shared_server: PoolServer) -> Wire:
    return Wire(shared_server)


@pytest.fixture(autouse=True)
def stocked(wire: Wire) -> None:
    """Before each test (not each example): objects to aim at, and their refs."""
    wire.restock()


def check_status(answer: httpx.Response) -> None:
    """No 5xx, no traceback; a 4xx carries a readable text body."""
    status = answer.status_code
    assert status < 500, f"HTTP {status}: {answer.text[:500]!r}"
    assert b"Traceback" not in answer.content, answer.text[:2000]
    if 400 <= status < 500:
        assert answer.headers.get("content-type", "").startswith("text/plain"), answer.headers
        text = answer.content.decode("utf-8")
        assert re.match(rf"{status} [A-Za-z ]+", text), text[:500]
    else:
        assert status == 200, f"HTTP {status}: {answer.text[:500]!r}"


def xml_envelope(answer: httpx.Response, wire_method: str = "") -> dict[str, Any]:
    """The checked ``{Status, Value | ErrorDescription}`` struct of a 200 XML-RPC answer (for
    system.listMethods, xapi's one bare answer, the list wrapped as a Success)."""
    check_status(answer)
    assert answer.status_code == 200, answer.text[:500]
    assert answer.headers["content-type"].startswith("text/xml")
    try:
        params, _ = xmlrpc.client.loads(answer.content)
    except xml.parsers.expat.ExpatError as exc:
        raise AssertionError(f"the answer is not well-formed XML ({exc}): {answer.content[:500]!r}") from None
    assert len(params) == 1
    result = params[0]
    if wire_method == "system.listMethods":
        assert isinstance(result, list) and all(isinstance(name, str) for name in result), result
        return {"Status": "Success", "Value": result}
    assert isinstance(result, dict)
    if result.get("Status") == "Success":
        assert set(result) == {"Status", "Value"}, result
    else:
        assert result.get("Status") == "Failure", result
        assert set(result) == {"Status", "ErrorDescription"}, result
        description = result["ErrorDescription"]
        assert isinstance(description, list) and description, result
        assert all(isinstance(d, str) for d in description), result
        assert description[0] != "INTERNAL_ERROR", "a bug in the server: see its log"
    return result


def check_xml_answer(answer: httpx.Response, method: str = "") -> None:
    check_status(answer)
    if answer.status_code == 200:
        xml_envelope(answer, method)


_PLAIN_ID = (str, int, float, bool, type(None))


def check_json_answer(answer: httpx.Response, request: Any = None) -> None:
    """A 200 is a JSON-RPC envelope in the request's version, echoing a simple id."""
    check_status(answer)
    if answer.status_code != 200:
        return
    assert answer.headers["content-type"].startswith("application/json")
    data = json.loads(answer.content)
    assert isinstance(data, dict) and "id" in data, data
    if isinstance(request, dict):
        assert ("jsonrpc" in data) == (request.get("jsonrpc") == "2.0"), (request, data)
        ident = request.get("id")
        if isinstance(ident, _PLAIN_ID) and not (isinstance(ident, int) and abs(ident) >= 2**63):
            assert data["id"] == ident, (request, data)
    if "jsonrpc" in data:
        assert data["jsonrpc"] == "2.0" and data["id"] is not None, data
        if "result" in data:
            assert set(data) == {"jsonrpc", "result", "id"}, data
            return
        assert set(data) == {"jsonrpc", "error", "id"}, data
        error = data["error"]
        assert set(error) == {"code", "message", "data"}, data
        assert isinstance(error["code"], int) and isinstance(error["message"], str), data
        assert isinstance(error["data"], list) and all(isinstance(d, str) for d in error["data"]), data
        assert error["message"] != "INTERNAL_ERROR", "a bug in the server: see its log"
        return
    assert set(data) == {"result", "error", "id"}, data
    if data["error"] is not None:
        error = data["error"]
        assert data["result"] is None, data
        assert isinstance(error, list) and error and all(isinstance(d, str) for d in error), data
        assert error[0] != "INTERNAL_ERROR", "a bug in the server: see its log"


def defuse(method: Any, params: Any) -> None:
    """event.from waits up to its timeout (an hour at most): cap fuzzed waits at 50 ms."""
    if not isinstance(method, str) or method.removeprefix("Async.") != "event.from":
        return
    if not isinstance(params, list) or len(params) < 4:
        return
    try:
        wait = float(params[3])
    except (TypeError, ValueError, OverflowError):
        return
    if wait > 0.05:
        params[3] = 0.05


def mostly(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], one_in: int) -> st.SearchStrategy[Any]:
    """``usual``, except one time in ``one_in``, ``rare``."""
    return st.integers(1, one_in).flatmap(lambda i: rare if i == 1 else usual)


# --- values ------------------------------------------------------------------------------------

# Text XML 1.0 can carry; any_text adds what it cannot (the server must refuse it, not fail).
xml_char = st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="\ufffe\uffff") | st.sampled_from("\t\n")
xml_text = st.text(xml_char, max_size=40)
any_text = st.text(max_size=40)
INTERESTING = [
    "",
    " ",
    "OpaqueRef:NULL",
    "OpaqueRef:",
    "OpaqueRef:00000000-0000-0000-0000-000000000000",
    "0",
    "-1",
    "1.5",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "1e400",
    "nan",
    "inf",
    "true",
    "False",
    "*",
    "VM",
    "vm",
    "host",
    "pool",
    "session",
    "task",
    "vm/OpaqueRef:NULL",
    "halted",
    "Running",
    "19700101T00:00:00Z",
    "2024-01-31T12:00:00",
    "root",
    "<&>]]>",
    "&amp;",
    "\u2603\u2028\U0001f600",
    "x" * 4000,
]
huge_int = st.one_of(st.integers(min_value=2**63, max_value=10**300), st.integers(-(10**300), -(2**63) - 1))
int32 = st.integers(-(2**31), 2**31 - 1)
live_ref = st.builds(Live, st.integers(0, 10**6)) | st.just(SESSION)
xml_scalar = st.one_of(
    int32,
    st.integers(-(2**64), 2**64).map(str),
    huge_int.map(str),
    st.floats(),
    st.booleans(),
    st.none(),
    xml_text,
    any_text,
    st.sampled_from(INTERESTING),
    st.datetimes().map(xmlrpc.client.DateTime),
    st.binary(max_size=32).map(xmlrpc.client.Binary),
    live_ref,
)
xml_values = st.recursive(
    xml_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(xml_text, inner, max_size=4),
    max_leaves=10,
)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_int,
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
    st.sampled_from(INTERESTING),
    live_ref,
)
json_values = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)

# Half real message names, half near misses and garbage.
method_names = mostly(
    st.sampled_from(METHODS),
    st.one_of(
        st.sampled_from(METHODS).map("Async.".__add__),
        st.builds("{}.{}".format, st.sampled_from(sorted(STORED)), xml_text),
        xml_text,
        st.sampled_from(
            ["", ".", "Async.", "Async.Async.VM.get_all", "vm.get_all", "VM.get_all ", "system.listMethods"]
        ),
    ),
    one_in=2,
)


def _typed(xtype: XType) -> st.SearchStrategy[Any]:
    """Values mostly of the right type for ``xtype``, often at the edges of what it admits."""
    if isinstance(xtype, StringType):
        return xml_text | st.sampled_from(INTERESTING)
    if isinstance(xtype, IntType):
        edge = st.sampled_from([" 5", "+3", "1_000", "0x10", "\u0661\u0662", "", "-0"])
        return int32 | st.integers(-(2**63), 2**63 - 1).map(str) | huge_int.map(str) | edge
    if isinstance(xtype, FloatType):
        return st.floats() | int32 | st.floats().map(repr) | st.sampled_from(["1e999", "0x1p3", ""])
    if isinstance(xtype, BoolType):
        return st.booleans() | st.sampled_from(["true", "FALSE", "yes", "1", ""])
    if isinstance(xtype, DateTimeType):
        forms = st.sampled_from(["20240131T12:00:00Z", "2024-01-31T12:00:00Z", "20241331T99:00:00Z", ""])
        return st.datetimes().map(xmlrpc.client.DateTime) | forms | xml_text
    if isinstance(xtype, RefType):
        own = st.builds(Live, st.integers(0, 10**6), st.just(xtype.target))
        return mostly(own, live_ref | st.sampled_from(["OpaqueRef:NULL", "OpaqueRef:x", ""]) | xml_text, 4)
    if isinstance(xtype, EnumType):
        member = st.sampled_from(xtype.members)
        return member | member.map(str.upper) | xml_text
    if isinstance(xtype, SetType):
        return st.lists(typed(xtype.element), max_size=4)
    if isinstance(xtype, MapType):
        key = _typed(xtype.key) if isinstance(xtype.key, StringType | EnumType | RefType) else xml_text
        return st.dictionaries(key, typed(xtype.value), max_size=4)
    if isinstance(xtype, RecordType) and xtype.target in STORED:
        fields = [f for f in STORED[xtype.target].fields if not isinstance(f.type, RecordType)]
        field = st.sampled_from(fields).flatmap(lambda f: st.tuples(st.just(f.name), typed(f.type)))
        return st.lists(field, max_size=8).map(dict) | st.dictionaries(xml_text, xml_values, max_size=3)
    if isinstance(xtype, OptionType):
        return st.none() | typed(xtype.inner)
    return xml_values


_TYPED: dict[str, st.SearchStrategy[Any]] = {}


def typed(xtype: XType) -> st.SearchStrategy[Any]:
    """``_typed``, with a value of any type one time in ten."""
    strategy = _TYPED.get(xtype.spelling)
    if strategy is None:
        strategy = mostly(st.deferred(lambda: _typed(xtype)), xml_values, 10)
        _TYPED[xtype.spelling] = strategy
    return strategy


@st.composite
def random_calls(draw: st.DrawFn) -> tuple[str, list[Any]]:
    """Any method name with any parameters, a valid session first half of the time."""
    method = draw(method_names)
    params = draw(st.lists(xml_values, max_size=6))
    if draw(st.booleans()):
        params.insert(0, SESSION)
    return method, params


@st.composite
def typed_calls(draw: st.DrawFn) -> tuple[str, list[Any]]:
    """A real message with parameters shaped by its signature, so calls reach the handlers."""
    name = draw(st.sampled_from(METHODS))
    sig = lookup(name)
    assert sig is not None
    method = "Async." + name if sig.asynchronous and draw(st.booleans()) else name
    params = [draw(typed(xtype)) for _, xtype in sig.params]
    if name != LOGIN:
        params.insert(0, SESSION if draw(st.integers(0, 9)) else draw(xml_values))
    if draw(st.integers(0, 19)) == 0:  # now and then one too many or too few
        params = params[:-1] if params and draw(st.booleans()) else [*params, draw(xml_values)]
    return method, params


def xml_body(wire: Wire, method: str, params: list[Any]) -> bytes:
    bound = wire.bind(params)
    defuse(method, bound)
    wire.disarm(method, bound)
    return xmlrpc.client.dumps(tuple(bound), escape(method), allow_none=True).encode("utf-8", "surrogatepass")


def json_body(wire: Wire, request: Any, ascii_only: bool) -> tuple[Any, bytes]:
    bound = wire.bind(request)
    if isinstance(bound, dict):
        defuse(bound.get("method"), bound.get("params"))
        wire.disarm(bound.get("method"), bound.get("params"))
    return bound, json.dumps(bound, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def jsonable(value: Any) -> Any:
    """An XML-RPC value as JSON can carry it."""
    if isinstance(value, xmlrpc.client.DateTime):
        return value.value
    if isinstance(value, xmlrpc.client.Binary):
        return value.data.decode("latin-1")
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


# --- (1) random bytes ---------------------------------------------------------------------------

PREFIXES = [b"", b"<?xml version='1.0'?>", b"<?xml version='1.0'?><methodCall><methodName>", b'{"method":']


@fuzz(200)
@given(path=st.sampled_from([*XML_PATHS, JSON_PATH]), prefix=st.sampled_from(PREFIXES), noise=st.binary())
def test_random_bytes(wire: Wire, path: str, prefix: bytes, noise: bytes) -> None:
    """Random bytes, bare or after the start of a request, get a 400 or an envelope, never a 5xx."""
    answer = wire.post(path, prefix + noise)
    if path == JSON_PATH:
        check_json_answer(answer)
    else:
        check_xml_answer(answer)
    wire.still_answers()


# --- (2) well-formed XML-RPC calls --------------------------------------------------------------


@fuzz(300)
@example(call=("pool.get_all", [xmlrpc.client.Binary(b"\0")]), path="/")  # found by a soak
@given(call=random_calls(), path=st.sampled_from(XML_PATHS))
def test_xml_calls_with_random_params(wire: Wire, call: tuple[str, list[Any]], path: str) -> None:
    """A method call with any name and parameters is answered with a XenAPI envelope or a 400."""
    body = xml_body(wire, *call)
    note(repr(body[:4000]))
    check_xml_answer(wire.post(path, body), call[0])
    wire.still_answers()


@fuzz(250)
@given(call=typed_calls())
def test_xml_calls_typed_by_signature(wire: Wire, call: tuple[str, list[Any]]) -> None:
    """Real messages with nearly right parameters succeed or fail with a XenAPI error, never a bug."""
    body = xml_body(wire, *call)
    note(repr(body[:4000]))
    check_xml_answer(wire.post("/", body))
    wire.still_answers()


# --- (3) mutated XML-RPC bodies -----------------------------------------------------------------

TOKEN = "@@SESSION@@"
SEEDS = [
    xmlrpc.client.dumps((TOKEN,), "pool.get_all"),
    xmlrpc.client.dumps(("root", ADMIN_PASSWORD, "1.0", "fuzz"), LOGIN),
    xmlrpc.client.dumps(
        (TOKEN, {"name_label": "a & b", "memory_static_max": "1073741824", "tags": ["x"], "other_config": {}}),
        "VM.create",
    ),
    xmlrpc.client.dumps((TOKEN, ["*"], "", 0.0), "event.from"),
    xmlrpc.client.dumps((TOKEN, TOKEN), "session.get_record"),
    xmlrpc.client.dumps(
        (TOKEN, 1, 2.5, True, [1, "a"], {"k": [None]}, xmlrpc.client.DateTime(0), xmlrpc.client.Binary(b"\0")),
        "Async.VM.get_all",
        allow_none=True,
    ),
]
TAGS = [
    "methodCall", "methodName", "methodResponse", "params", "param", "value", "int", "i4", "i8",
    "boolean", "string", "double", "dateTime.iso8601", "base64", "array", "data", "struct", "member",
    "name", "nil", "fault", "ex:nil", "bogus",
]  # fmt: skip
DTDS = [
    '<!DOCTYPE methodCall [<!ENTITY a "pool.get_all">]>',
    '<!DOCTYPE methodCall [<!ENTITY a "aa"><!ENTITY b "&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;">'
    '<!ENTITY d "&c;&c;&c;&c;">]>',
    '<!DOCTYPE methodCall [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    "<!DOCTYPE methodCall [<!ENTITY % p \"<!ENTITY q 'r'>\"> %p;]>",
    '<!DOCTYPE methodCall SYSTEM "http://127.0.0.1:9/x.dtd">',
    "<!DOCTYPE methodCall>",
]
ENTITY_REFS = ["&a;", "&d;", "&x;", "&q;", "&undefined;", "&#0;", "&#x41;", "&lt;"]

Mutation = Callable[[bytes], bytes]


def _at(data: bytes, where: float) -> int:
    return min(len(data), int(where * len(data)))


def _tags(data: bytes) -> list[re.Match[bytes]]:
    return list(re.finditer(rb"<(/?)([A-Za-z][\w.:]*)>", data))


def truncate(where: float) -> Mutation:
    return lambda data: data[: _at(data, where)]


def insert(where: float, chunk: bytes) -> Mutation:
    return lambda data: data[: _at(data, where)] + chunk + data[_at(data, where) :]


def delete(where: float, length: int) -> Mutation:
    return lambda data: data[: _at(data, where)] + data[_at(data, where) + length :]


def replace(where: float, byte: int) -> Mutation:
    def apply(data: bytes) -> bytes:
        i = _at(data, where)
        return data[:i] + bytes([byte]) + data[i + 1 :] if i < len(data) else data

    return apply


def duplicate_element(which: int) -> Mutation:
    """Repeat an element (up to the first closing tag of its name), or a lone tag."""

    def apply(data: bytes) -> bytes:
        opens = [m for m in _tags(data) if not m.group(1)]
        if not opens:
            return data
        start = opens[which % len(opens)]
        close = data.find(b"</" + start.group(2) + b">", start.end())
        end = close + len(start.group(2)) + 3 if close >= 0 else start.end()
        return data[:end] + data[start.start() : end] + data[end:]

    return apply


def rename_tag(which: int, name: str) -> Mutation:
    """Rename a tag; an opening tag's first closing tag with it, so the XML stays well-formed."""

    def apply(data: bytes) -> bytes:
        tags = _tags(data)
        if not tags:
            return data
        m = tags[which % len(tags)]
        if not m.group(1):
            close = b"</" + m.group(2) + b">"
            at = data.find(close, m.end())
            if at >= 0:
                data = data[:at] + b"</" + name.encode() + b">" + data[at + len(close) :]
        return data[: m.start(2)] + name.encode() + data[m.end(2) :]

    return apply


def replace_text(which: int, text: str) -> Mutation:
    """Replace the text between two tags (a name, a number, a ref) with other, escaped, text."""

    def apply(data: bytes) -> bytes:
        spans = list(re.finditer(rb">([^<]*)<", data))
        if not spans:
            return data
        m = spans[which % len(spans)]
        return data[: m.start(1)] + escape(text).encode("utf-8", "surrogatepass") + data[m.end(1) :]

    return apply


def add_dtd(dtd: str, ref: str) -> Mutation:
    """A DOCTYPE after the XML declaration, and an entity reference as the method name."""

    def apply(data: bytes) -> bytes:
        head, sep, rest = data.partition(b"?>")
        data = head + sep + dtd.encode() + rest if sep else dtd.encode() + data
        return re.sub(rb"<methodName>[^<]*</methodName>", f"<methodName>{ref}</methodName>".encode(), data)

    return apply


def nest(depth: int, kind: str) -> Mutation:
    """Wrap the first value's contents in ``depth`` arrays or structs."""
    if kind == "array":
        opening, closing = b"<value><array><data>" * depth, b"</data></array></value>" * depth
    else:
        opening = b"<value><struct><member><name>k</name>" * depth
        closing = b"</member></struct></value>" * depth
    return lambda data: data.replace(b"<value>", b"<value>" + opening, 1).replace(b"</value>", closing + b"</value>", 1)


bytewise = st.one_of(
    st.builds(truncate, st.floats(0, 1)),
    st.builds(insert, st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.builds(insert, st.floats(0, 1), st.sampled_from([b"<", b">", b"&", b"<value>", b"</value>", b"\0"])),
    st.builds(delete, st.floats(0, 1), st.integers(1, 64)),
    st.builds(replace, st.floats(0, 1), st.integers(0, 255)),
)
structural = st.one_of(
    st.builds(duplicate_element, st.integers(0, 100)),
    st.builds(rename_tag, st.integers(0, 100), st.sampled_from(TAGS)),
    st.builds(replace_text, st.integers(0, 100), st.sampled_from(INTERESTING) | huge_int.map(str) | xml_text),
    st.builds(add_dtd, st.sampled_from(DTDS), st.sampled_from(ENTITY_REFS)),
    # Depths the recursion limit cannot reach; test_deeply_nested_xml goes deeper.
    st.builds(nest, st.integers(1, 200), st.sampled_from(["array", "struct"])),
)
mutations = st.lists(mostly(structural, bytewise, 3), min_size=1, max_size=4)


@fuzz(300)
@given(seed=st.sampled_from(SEEDS), changes=mutations, path=st.sampled_from(XML_PATHS))
def test_mutated_xml_bodies(wire: Wire, seed: str, changes: list[Mutation], path: str) -> None:
    """A valid call truncated, spliced, with tags repeated or renamed or a DTD added, never breaks it."""
    body = seed.encode()
    for change in changes:
        body = change(body)
    body = body.replace(TOKEN.encode(), wire.session.encode())
    note(repr(body[:4000]))
    answer = wire.post(path, body)
    check_xml_answer(answer)
    assert b"root:x:0:0" not in answer.content  # no external entity was read
    wire.still_answers()


@fuzz(40)
@example(depth=10_000, kind="array", slot=0)
@example(depth=10_000, kind="struct", slot=1)
@given(
    depth=st.integers(1, 10_000),
    kind=st.sampled_from(["array", "struct"]),
    slot=st.integers(0, 1),
)
def test_deeply_nested_xml(wire: Wire, depth: int, kind: str, slot: int) -> None:
    """Arrays or structs nested up to 10,000 deep, as the session or as an argument, get an answer."""
    if kind == "array":
        value = "<value><array><data>" * depth + "<value>x</value>" + "</data></array></value>" * depth
    else:
        value = "<value><struct><member><name>k</name>" * depth + "<value>x</value>"
        value += "</member></struct></value>" * depth
    session = f"<param><value>{wire.session}</value></param>"
    params = f"<param>{value}</param>" if slot == 0 else session + f"<param>{value}</param>"
    body = (
        f"<?xml version='1.0'?><methodCall><methodName>VM.get_record</methodName><params>{params}</params></methodCall>"
    )
    check_xml_answer(wire.post("/", body.encode()))
    wire.still_answers()


# Encodings expat reads, each spelt as a declaration names it and as Python writes it.
ENCODINGS = [
    ("UTF-8", "utf-8"),
    ("UTF-16", "utf-16"),
    ("UTF-16LE", "utf-16-le"),
    ("UTF-16BE", "utf-16-be"),
    ("ISO-8859-1", "latin-1"),
    ("US-ASCII", "ascii"),
]


@fuzz(60)
@given(
    encoding=st.sampled_from(ENCODINGS),
    dtd=st.sampled_from(DTDS),
    ref=st.sampled_from(ENTITY_REFS),
    levels=st.integers(1, 4),
    fan=st.integers(2, 10),
)
def test_xml_with_a_dtd_is_refused(
    wire: Wire, encoding: tuple[str, str], dtd: str, ref: str, levels: int, fan: int
) -> None:
    """A DOCTYPE (entities, external ones, small billion laughs) gets a 400 in every encoding expat reads."""
    laughs = '<!ENTITY l0 "lol">' + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * fan}">' for i in range(1, levels + 1))
    dtd = dtd.replace("[", "[" + laughs, 1) if "[" in dtd else dtd
    declared, codec = encoding
    text = (
        f'<?xml version="1.0" encoding="{declared}"?>{dtd}<methodCall><methodName>{ref}&l{levels};</methodName>'
        f"<params><param><value>{wire.session}</value></param></params></methodCall>"
    )
    body = text.encode(codec)
    note(repr(body))
    answer = wire.post("/", body)
    check_xml_answer(answer)
    assert b"root:x:0:0" not in answer.content
    assert answer.status_code == 400, f"a DTD reached the dispatcher: {answer.text[:300]!r}"
    wire.still_answers()


# --- (4) JSON-RPC -------------------------------------------------------------------------------


@fuzz(200)
@given(value=json_values, ascii_only=st.booleans())
def test_random_json_values(wire: Wire, value: Any, ascii_only: bool) -> None:
    """Any JSON value as the body (big numbers, lone surrogates, any text) gets a 400 or an envelope."""
    request, body = json_body(wire, value, ascii_only)
    note(repr(body[:4000]))
    check_json_answer(wire.post(JSON_PATH, body), request)
    wire.still_answers()


@st.composite
def json_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Request objects whose fields are each right, nearly right, wrong or missing."""
    method = draw(st.integers(0, 9))
    if method < 7:
        name, params = draw(random_calls() | typed_calls())
        params = jsonable(params)
    else:
        name, params = draw(json_values), draw(st.lists(json_values, max_size=4) | json_values)
    request: dict[str, Any] = {}
    if draw(st.integers(0, 19)):
        request["method"] = name
    if draw(st.integers(0, 19)):
        request["params"] = params
    ident = st.integers(-(2**63), 2**63 - 1) | any_text | json_values | huge_int
    request.update(
        draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "id": ident,
                    "jsonrpc": st.sampled_from(["2.0", "1.0", "2", 2.0, None]) | json_values,
                    "extra": json_values,
                },
            )
        )
    )
    return request


@fuzz(300)
@given(request=json_requests(), ascii_only=st.booleans())
def test_json_requests(wire: Wire, request: dict[str, Any], ascii_only: bool) -> None:
    """Request objects with random method, params, id and jsonrpc get a 400 or an envelope of their version."""
    bound, body = json_body(wire, request, ascii_only)
    note(repr(body[:4000]))
    check_json_answer(wire.post(JSON_PATH, body), bound)
    wire.still_answers()


JSON_SEEDS = [
    '{"jsonrpc":"2.0","method":"pool.get_all","params":["@@SESSION@@"],"id":1}',
    '{"method":"VM.get_all_records","params":["@@SESSION@@"],"id":"x"}',
    '{"method":"session.login_with_password","params":["root","nope","1.0"],"id":null}',
    '{"jsonrpc":"2.0","method":"event.from","params":["@@SESSION@@",["vm"],"",0.0],"id":[1,{"a":2}]}',
]
JSON_CHUNKS = [
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"\0",
    b"\\ud800",
    b"\\u0000",
    b"18446744073709551616",
    b"1e999",
    b"-0",
    b"NaN",
    b'"',
    b"{",
    b"]",
    b",",
]
json_mutations = st.lists(
    st.one_of(
        st.builds(truncate, st.floats(0, 1)),
        st.builds(insert, st.floats(0, 1), st.binary(min_size=1, max_size=16) | st.sampled_from(JSON_CHUNKS)),
        st.builds(delete, st.floats(0, 1), st.integers(1, 16)),
        st.builds(replace, st.floats(0, 1), st.integers(0, 255)),
    ),
    min_size=1,
    max_size=4,
)


@fuzz(200)
@given(seed=st.sampled_from(JSON_SEEDS), changes=json_mutations, encoding=st.sampled_from(["utf-8", "utf-16"]))
def test_mutated_json_bodies(wire: Wire, seed: str, changes: list[Mutation], encoding: str) -> None:
    """A valid JSON-RPC body truncated or spliced with bytes that are not UTF-8 or not JSON gets an answer."""
    body = seed.replace(TOKEN, wire.session).encode(encoding)
    for change in changes:
        body = change(body)
    note(repr(body[:4000]))
    check_json_answer(wire.post(JSON_PATH, body))
    wire.still_answers()


@fuzz(40)
@example(depth=10_000, kind="list", slot="params")
@example(depth=1_000, kind="list", slot="id")
@example(depth=1_000, kind="object", slot="session")
@given(
    depth=st.integers(1, 10_000),
    kind=st.sampled_from(["list", "object"]),
    slot=st.sampled_from(["id", "session", "params", "method", "body"]),
)
def test_deeply_nested_json(wire: Wire, depth: int, kind: str, slot: str) -> None:
    """Lists or objects nested up to 10,000 deep, in any part of a request, get an answer."""
    deep = "[" * depth + "1" + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth
    session = json.dumps(wire.session)
    parts = {
        "id": f'{{"jsonrpc":"2.0","method":"pool.get_all","params":[{session}],"id":{deep}}}',
        "session": f'{{"method":"pool.get_all","params":[{deep}],"id":1}}',
        "params": f'{{"method":"VM.get_record","params":[{session},{deep}],"id":1}}',
        "method": f'{{"method":{deep},"params":[],"id":1}}',
        "body": deep,
    }
    body = parts[slot].encode()
    check_json_answer(wire.post(JSON_PATH, body), json.loads(body) if depth < 500 else None)
    wire.still_answers()


@fuzz(6)
@example(size=15 * 1024 * 1024, char="x", slot="session")
@given(
    size=st.integers(1, 15 * 1024 * 1024),
    char=st.sampled_from(["x", "\u00e9", "\U0001f600", "\\u0041"]),
    slot=st.sampled_from(["method", "session", "param", "id"]),
)
def test_huge_json_strings(wire: Wire, size: int, char: str, slot: str) -> None:
    """Strings of up to 15 MiB, within the 16 MiB limit, in any field of a request get an answer."""
    huge = '"' + char * (size // len(char.encode())) + '"'
    session = json.dumps(wire.session)
    parts = {
        "method": f'{{"method":{huge},"params":[],"id":1}}',
        "session": f'{{"method":"pool.get_all","params":[{huge}],"id":1}}',
        "param": f'{{"jsonrpc":"2.0","method":"VM.get_by_name_label","params":[{session},{huge}],"id":1}}',
        "id": f'{{"jsonrpc":"2.0","method":"pool.get_all","params":[{session}],"id":{huge}}}',
    }
    body = parts[slot].encode()
    assert len(body) <= DEFAULT_MAX_BODY_BYTES
    check_json_answer(wire.post(JSON_PATH, body))
    wire.still_answers()


# --- (5) the size limit, and the server still standing -----------------------------------------


@pytest.mark.parametrize("path", ["/", JSON_PATH])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_body_over_the_limit_gets_413(wire: Wire, path: str, declared: bool) -> None:
    """A 17 MiB body gets a 413 with a readable text body, whether its length is declared or streamed."""
    size = 17 * 1024 * 1024
    if declared:
        answer = wire.post(path, b"x" * size)
    else:
        chunks = (b"x" * (1024 * 1024) for _ in range(size // (1024 * 1024)))
        answer = httpx.post(wire.server.url + path, content=chunks, timeout=30)
    assert answer.status_code == 413, answer.text[:300]
    check_status(answer)
    wire.still_answers()


def test_server_survived_the_fuzzing(wire: Wire, shared_server: PoolServer) -> None:
    """After every fuzz test above, the process is alive and root can log in and read the pool."""
    assert shared_server.process is not None and shared_server.process.poll() is None
    session = shared_server.session()
    assert len(session.xenapi.pool.get_all()) == 1
    session.xenapi.session.logout()
