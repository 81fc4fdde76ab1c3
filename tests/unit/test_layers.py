"""The layer rule of DESIGN.md §2: a module imports only from layers below its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "farside"
# errors, config → model → db, storage, hypervisor → replication, mirror, backup → dr → api → web → server → cli
RANK = {
    "__init__": 0,
    "errors": 0,
    "config": 0,
    "model": 1,
    "db": 2,
    "storage": 2,
    "hypervisor": 2,
    "replication": 3,
    "mirror": 3,
    "backup": 3,
    "dr": 4,
    "api": 5,
    "web": 6,
    "server": 7,
    "cli": 8,
}


def _part(module: str) -> str:
    """The top-level part of farside a dotted module name belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("farside")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("farside"):
            found.append(node.module)
    return found


MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_down(path: Path) -> None:
    """Every farside import in a module targets its own part or a lower layer."""
    relative = path.relative_to(SRC)
    own = relative.parts[0].removesuffix(".py")
    assert own in RANK, f"{own} has no layer; add it to DESIGN.md and to RANK"
    for target in _imports(path):
        other = _part(target)
        assert other in RANK, f"{relative} imports {target}, which has no layer"
        if other == own:
            continue
        if RANK[other] == RANK[own] and other != "__init__":
            raise AssertionError(f"{relative} imports its sibling {target}; siblings stay independent")
        assert RANK[other] < RANK[own] or other == "__init__", f"{relative} imports {target} from a higher layer"
