"""XenServer's RBAC roles, strongest first in xapi's order (xenapi-dr.md §7).

A message is allowed to one role and every stronger role, so a message needs only its weakest
allowed role. ``client-cert`` is xapi-internal (certificate-based pool logins) and Farside has none.
"""

from __future__ import annotations

import enum


class Role(enum.IntEnum):
    """A role; a larger value is a stronger role."""

    READ_ONLY = 0
    VM_OPERATOR = 1
    VM_ADMIN = 2
    VM_POWER_ADMIN = 3
    POOL_OPERATOR = 4
    POOL_ADMIN = 5

    @property
    def wire(self) -> str:
        """The role's name as xapi spells it: ``pool-admin``."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, name: str) -> Role:
        """The role named ``name`` (``pool-operator``); ValueError when there is none."""
        try:
            return cls[name.upper().replace("-", "_")]
        except KeyError:
            names = ", ".join(r.wire for r in sorted(cls, reverse=True))
            raise ValueError(f"unknown role {name!r}; roles are: {names}") from None

    def allows(self, needed: Role) -> bool:
        """Whether a session holding this role may call a message that needs ``needed``."""
        return self >= needed

    def holders(self) -> list[str]:
        """The wire names of every role allowed what this role is allowed, strongest first."""
        return [r.wire for r in sorted(Role, reverse=True) if r >= self]
