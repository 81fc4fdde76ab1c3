"""Farside's declared messages, roles and fields against xapi's published datamodel.

The datamodel is read at test time from the shared folder next to the work tree
(``/work/shared/xenapi-datamodel.json``): a list of classes, each with its fields and messages, and
for each message its ``roles`` (strongest first) and whether xapi generates it (``implicit``).
``client-cert`` is a role xapi keeps for its own pool logins; Farside has none, so it is left out of
every comparison.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from farside.model import CLASSES
from farside.model.messages import role_table, signatures
from farside.model.roles import Role

DATAMODEL = Path(__file__).parents[4] / "shared" / "xenapi-datamodel.json"
CLIENT_CERT = "client-cert"

# xapi classes the shared file leaves out (it holds 30 of xapi's classes): declared from xapi's
# datamodel_*.ml by hand, nothing here to compare them with.
NOT_IN_FILE = {"secret"}
# Classes that xapi has too; Farside-only ones (the ``user`` class) have nothing to compare with.
SERVED = [name for name, c in CLASSES.items() if not c.farside and name not in NOT_IN_FILE]
# Classes whose getters, setters and lookups xapi generates and Farside derives (not event, message).
WITH_IMPLICIT = [name for name in SERVED if CLASSES[name].implicit]


@pytest.fixture(scope="module")
def datamodel() -> dict[str, dict[str, Any]]:
    """xapi's classes by name, as its datamodel publishes them."""
    if not DATAMODEL.is_file():
        pytest.skip(f"xapi's datamodel is not at {DATAMODEL}: nothing to compare Farside with")
    return {c["name"]: c for c in json.loads(DATAMODEL.read_text())}


def xapi_class(datamodel: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    """The class ``name`` of xapi's datamodel; every class Farside serves must be there."""
    assert name in datamodel, f"Farside serves {name}, which xapi's datamodel does not have"
    return datamodel[name]


# Messages xapi declares with ``hide_from_docs``, so the published datamodel lacks them; their
# parameters as ocaml/idl/datamodel_vm.ml gives them.
HIDDEN = {
    "VM": [
        {
            "name": "assert_can_migrate_sender",
            "params": [
                {"name": "vm", "type": "VM ref"},
                {"name": "dest", "type": "(string -> string) map"},
                {"name": "live", "type": "bool"},
                {"name": "vdi_map", "type": "(VDI ref -> SR ref) map"},
                {"name": "vif_map", "type": "(VIF ref -> network ref) map"},
                {"name": "vgpu_map", "type": "(VGPU ref -> GPU_group ref) map"},
                {"name": "options", "type": "(string -> string) map"},
            ],
            "roles": ["pool-admin", "pool-operator", "vm-power-admin"],
        }
    ]
}


def xapi_messages(datamodel: dict[str, dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in [*xapi_class(datamodel, name)["messages"], *HIDDEN.get(name, [])]}


def without_client_cert(roles: list[str]) -> list[str]:
    return [r for r in roles if r != CLIENT_CERT]


@pytest.mark.parametrize("cls", SERVED)
def test_weakest_role_is_xapis(datamodel: dict[str, dict[str, Any]], cls: str) -> None:
    """Each message xapi also has needs xapi's weakest role, and is allowed to exactly xapi's roles."""
    xapi = xapi_messages(datamodel, cls)
    wrong = []
    for wire, role in role_table().items():
        owner, _, name = wire.partition(".")
        if owner != cls or name not in xapi:
            continue
        roles = without_client_cert(xapi[name]["roles"])
        weakest = roles[-1] if roles else None
        ours = role.wire if role is not None else None
        holders = role.holders() if role is not None else []
        if ours != weakest or holders != roles:
            wrong.append(f"{wire}: Farside needs {ours} (allowing {holders}), xapi allows {roles}")
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize("cls", WITH_IMPLICIT)
def test_every_implicit_message_exists(datamodel: dict[str, dict[str, Any]], cls: str) -> None:
    """Every message xapi generates for a class Farside serves is answered by Farside."""
    ours = signatures(cls)
    missing = [
        f"{cls}.{m['name']}" for m in xapi_class(datamodel, cls)["messages"] if m["implicit"] and m["name"] not in ours
    ]
    assert missing == [], "implicit messages Farside lacks: " + ", ".join(missing)


@pytest.mark.parametrize("cls", SERVED)
def test_hand_written_parameters_are_xapis(datamodel: dict[str, dict[str, Any]], cls: str) -> None:
    """A hand-written message takes xapi's parameters, by name and type, after the session."""
    xapi = xapi_messages(datamodel, cls)
    wrong = []
    for message in CLASSES[cls].messages:
        wire = f"{cls}.{message.name}"
        if message.name not in xapi:
            wrong.append(f"{wire}: not in xapi's datamodel")
            continue
        theirs = [(p["name"], p["type"]) for p in xapi[message.name]["params"]]
        if theirs[:1] == [("session_id", "session ref")]:
            theirs = theirs[1:]
        ours = [(name, xtype.spelling) for name, xtype in message.params]
        if ours != theirs:
            wrong.append(f"{wire}: Farside takes {ours}, xapi {theirs}")
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize("cls", SERVED)
def test_every_xapi_field_is_declared_alike(datamodel: dict[str, dict[str, Any]], cls: str) -> None:
    """Every field xapi declares is in Farside's class, with xapi's type spelling and qualifier."""
    c = CLASSES[cls]
    wrong = []
    for field in xapi_class(datamodel, cls)["fields"]:
        name = f"{cls}.{field['name']}"
        if not c.has_field(field["name"]):
            wrong.append(f"{name}: missing ({field['type']}, {field['qualifier']})")
            continue
        ours = c.field(field["name"])
        if (ours.type.spelling, ours.qualifier.value) != (field["type"], field["qualifier"]):
            wrong.append(
                f"{name}: Farside has {ours.type.spelling} {ours.qualifier.value}, "
                f"xapi {field['type']} {field['qualifier']}"
            )
    assert wrong == [], "\n".join(wrong)


def test_roles_are_xapis_in_xapis_order(datamodel: dict[str, dict[str, Any]]) -> None:
    """The role names Farside knows, strongest first, are xapi's without ``client-cert``."""
    # A getter is allowed to every role, so the longest role list names them all.
    everyone = max((m["roles"] for c in datamodel.values() for m in c["messages"]), key=len)
    assert Role.READ_ONLY.holders() == without_client_cert(everyone)
