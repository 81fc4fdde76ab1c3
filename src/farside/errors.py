"""Farside's errors: one hierarchy, each class with its XenAPI error code.

``FarsideError(*params).failure`` is what crosses the wire, ``[CODE, param, ...]`` with every param
a string, exactly as xapi spells it (``["HANDLE_INVALID", "VM", ref]``). The CLI turns the same
error into a one-line message and an exit code; the HTTP layer into a status. Errors are raised with
their params and translated nowhere else. Bugs are not FarsideErrors: they become INTERNAL_ERROR
at the boundary, with the traceback in the server log only.

    FarsideError
    ├── ClientError              the request itself is wrong (bad message, type, value, ref)
    ├── AuthError                no session, a bad one, or not allowed
    ├── StateError               the request is fine but the objects are not in a state for it
    └── InternalError            a bug or a broken environment
"""

from __future__ import annotations

from typing import ClassVar


class FarsideError(Exception):
    """An error with a XenAPI code; ``params`` are the failure's parameters."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    # The CLI's exit code for this kind of error.
    exit_code: ClassVar[int] = 1

    def __init__(self, *params: object) -> None:
        self.params = [str(p) for p in params]
        super().__init__(self.describe())

    @property
    def failure(self) -> list[str]:
        """The XenAPI ErrorDescription: the code followed by the params."""
        return [self.code, *self.params]

    def describe(self) -> str:
        """A one-line readable message."""
        return " ".join([self.code, *self.params]) if self.params else self.code


class XenAPIFailure(FarsideError):
    """A failure with a code chosen at run time, for codes raised in one place only."""

    def __init__(self, code: str, *params: object) -> None:
        self._code = code
        super().__init__(*params)

    @property
    def failure(self) -> list[str]:
        return [self._code, *self.params]

    def describe(self) -> str:
        return " ".join([self._code, *self.params])


class ClientError(FarsideError):
    """The request names something that does not exist or has the wrong shape."""

    exit_code = 2


class MessageMethodUnknown(ClientError):
    code = "MESSAGE_METHOD_UNKNOWN"


class MessageParameterCountMismatch(ClientError):
    code = "MESSAGE_PARAMETER_COUNT_MISMATCH"


class HandleInvalid(ClientError):
    code = "HANDLE_INVALID"


class UuidInvalid(ClientError):
    code = "UUID_INVALID"


class FieldTypeError(ClientError):
    code = "FIELD_TYPE_ERROR"


class InvalidValue(ClientError):
    code = "INVALID_VALUE"


class MapDuplicateKey(ClientError):
    code = "MAP_DUPLICATE_KEY"


class AuthError(FarsideError):
    """The caller is not who it must be."""

    exit_code = 3


class SessionAuthenticationFailed(AuthError):
    code = "SESSION_AUTHENTICATION_FAILED"


class SessionInvalid(AuthError):
    code = "SESSION_INVALID"


class RbacPermissionDenied(AuthError):
    code = "RBAC_PERMISSION_DENIED"


class StateError(FarsideError):
    """The objects involved are not in a state that allows the request."""

    exit_code = 4


class OperationNotAllowed(StateError):
    code = "OPERATION_NOT_ALLOWED"


class EventsLost(StateError):
    code = "EVENTS_LOST"


class TaskCancelled(StateError):
    code = "TASK_CANCELLED"


class UserExists(StateError):
    code = "USER_ALREADY_EXISTS"


class DatabaseError(FarsideError):
    """The pool database cannot be opened or is not a Farside database."""

    code = "DATABASE_ERROR"
    exit_code = 5


class InternalError(FarsideError):
    code = "INTERNAL_ERROR"
    exit_code = 70
