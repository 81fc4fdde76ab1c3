"""The refusal table against Farside's declarations, xapi's datamodel and docs/api.md.

Every message of xapi's datamodel (``/work/shared/xenapi-datamodel.json``, found as
test_messages.py finds it) is either declared by Farside or refused, never both; a refused one is
refused with xapi's weakest role and parameter count, so the dispatcher checks them as xapi does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from farside.model.messages import lookup
from farside.model.refusals import GROUPS, SESSIONLESS, markdown, parameter, refused

DATAMODEL = Path(__file__).parents[4] / "shared" / "xenapi-datamodel.json"
API_DOC = Path(__file__).parents[3] / "docs" / "api.md"
CLIENT_CERT = "client-cert"
BEGIN, END = "<!-- refusals:begin -->", "<!-- refusals:end -->"


@pytest.fixture(scope="module")
def xapi() -> dict[str, dict[str, Any]]:
    """xapi's messages by wire name."""
    if not DATAMODEL.is_file():
        pytest.skip(f"xapi's datamodel is not at {DATAMODEL}: nothing to compare Farside with")
    return {f"{c['name']}.{m['name']}": m for c in json.loads(DATAMODEL.read_text()) for m in c["messages"]}


def test_no_message_is_both_declared_and_refused() -> None:
    """A message with a handler must leave the refusal table (the integrator deletes its entry)."""
    both = sorted(name for name in refused() if lookup(name) is not None)
    assert both == [], "declared and refused: delete these from model/refusals.py: " + ", ".join(both)


def test_every_xapi_message_is_declared_or_refused(xapi: dict[str, dict[str, Any]]) -> None:
    """No message xapi has is unknown to Farside."""
    unknown = sorted(name for name in xapi if lookup(name) is None and name not in refused())
    assert unknown == [], "neither declared nor refused: " + ", ".join(unknown)


def test_refused_messages_are_xapis_with_its_role_and_arity(xapi: dict[str, dict[str, Any]]) -> None:
    """Each refused message exists in xapi, needs xapi's weakest role and takes xapi's parameter count."""
    wrong = []
    for name, entry in refused().items():
        if name not in xapi:
            wrong.append(f"{name}: not in xapi's datamodel")
            continue
        params = xapi[name]["params"]
        has_session = bool(params) and params[0]["type"] == "session ref"
        roles = [r for r in xapi[name]["roles"] if r != CLIENT_CERT]
        weakest = roles[-1] if roles else None
        ours = entry.role.wire if entry.role is not None else None
        if (ours, entry.arity, entry.sessionless) != (weakest, len(params) - has_session, not has_session):
            wrong.append(f"{name}: Farside {ours}/{entry.arity}, xapi {weakest}/{len(params) - has_session}")
    assert wrong == [], "\n".join(wrong)


def test_sessionless_messages_are_refused() -> None:
    """The messages called without a session are all in the table."""
    assert set(refused()) >= SESSIONLESS


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.title)
def test_group_is_well_formed(group: Any) -> None:
    """A group has an error code, a one-line reason, and parameters that name real arguments."""
    assert re.fullmatch(r"[A-Z][A-Z_]+", group.code)
    assert group.reason and "\n" not in group.reason and group.messages
    for template in group.params:
        kind, index, _ = parameter(template)
        if kind == "arg":
            assert index is not None
            short = [name for name, (_, arity) in group.messages.items() if index >= arity]
            assert short == [], f"{template} names an argument these lack: {short}"


def test_api_doc_lists_the_table(regenerate_docs: bool) -> None:
    """docs/api.md carries the refusal list exactly as the table generates it, between its markers."""
    text = API_DOC.read_text()
    listed = re.search(f"{BEGIN}\n(.*){END}", text, flags=re.S)
    assert listed is not None, f"docs/api.md has lost its {BEGIN} and {END} markers"
    if regenerate_docs:
        API_DOC.write_text(text[: listed.start(1)] + markdown() + text[listed.end(1) :])
        return
    assert listed.group(1) == markdown(), "run: pytest tests/unit/model --regenerate-docs"
