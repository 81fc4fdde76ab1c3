"""The error hierarchy: unique codes, failures made of strings."""

from __future__ import annotations

from farside import errors


def _all(cls: type[errors.FarsideError]) -> list[type[errors.FarsideError]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found += _all(sub)
    return found


def test_codes_are_unique() -> None:
    """No two error classes share a XenAPI code (a code names exactly one kind of failure)."""
    concrete = [c for c in _all(errors.FarsideError) if "code" in c.__dict__]
    codes = [c.code for c in concrete]
    assert len(codes) == len(set(codes)), sorted(codes)


def test_failure_is_code_and_string_params() -> None:
    """A failure is the code followed by every param as a string."""
    assert errors.HandleInvalid("VM", "OpaqueRef:x").failure == ["HANDLE_INVALID", "VM", "OpaqueRef:x"]
    assert errors.InvalidValue("order", -1).failure == ["INVALID_VALUE", "order", "-1"]
    assert errors.XenAPIFailure("VM_REQUIRES_SR", "a", "b").failure == ["VM_REQUIRES_SR", "a", "b"]


def test_exit_codes_by_kind() -> None:
    """Client errors, auth errors and state errors have distinct CLI exit codes."""
    kinds = [errors.ClientError, errors.AuthError, errors.StateError, errors.InternalError]
    assert len({k.exit_code for k in kinds}) == len(kinds)
