"""Local user accounts: records in the ``user`` class, argon2 hashes beside them.

Used by ``farside init``, the ``farside user`` commands and ``session.login_with_password``.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from farside.db.transaction import Transaction
from farside.errors import HandleInvalid, UserExists
from farside.model.roles import Role

_HASHER = PasswordHasher()


def find(tx: Transaction, name: str) -> str | None:
    """The ref of the user called ``name``, or None."""
    refs = tx.find("user", "short_name", name)
    return refs[0] if refs else None


def add(tx: Transaction, name: str, role: Role, password: str, fullname: str = "") -> str:
    """Create a user; USER_ALREADY_EXISTS if the name is taken."""
    if not name or name != name.strip():
        raise ValueError("a user name must be non-empty, without leading or trailing blanks")
    if find(tx, name) is not None:
        raise UserExists(name)
    ref = tx.create("user", {"short_name": name, "fullname": fullname, "role": role.wire})
    tx.set_password_hash(ref, _HASHER.hash(password))
    return ref


def remove(tx: Transaction, name: str) -> None:
    ref = find(tx, name)
    if ref is None:
        raise HandleInvalid("user", name)
    tx.set_password_hash(ref, None)
    tx.destroy("user", ref)


def set_password(tx: Transaction, name: str, password: str) -> None:
    ref = find(tx, name)
    if ref is None:
        raise HandleInvalid("user", name)
    tx.set_password_hash(ref, _HASHER.hash(password))


def verify(tx: Transaction, name: str, password: str) -> tuple[str, Role] | None:
    """The user's ref and role if ``password`` is theirs, else None (no hint of which part failed)."""
    ref = find(tx, name)
    hashed = tx.password_hash(ref) if ref is not None else None
    if ref is None or hashed is None:
        # Spend the same time as a real check so that timing does not reveal user names.
        _HASHER.hash(password)
        return None
    try:
        _HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return None
    return ref, Role.parse(tx.get_field("user", ref, "role"))
