"""The replication adapter's null implementation: unknown state, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from farside.errors import OperationNotAllowed
from farside.storage.replication import NullReplication, ReplicationState


def test_unmanaged_luns_are_unknown(tmp_path: Path) -> None:
    """A LUN nobody manages reports unknown, so the operator must confirm the split."""
    assert NullReplication().state(tmp_path) is ReplicationState.UNKNOWN


@pytest.mark.parametrize("action", ["split", "reverse", "resync"])
def test_unmanaged_luns_cannot_be_changed(tmp_path: Path, action: str) -> None:
    """split, reverse and resync say the array must do it, instead of pretending."""
    with pytest.raises(OperationNotAllowed, match="storage array"):
        getattr(NullReplication(), action)(tmp_path)
