"""The import failures xapi reports for a bad XVA, with its codes (ocaml/xapi/import.ml)."""

from __future__ import annotations

from farside.errors import ClientError


class XvaInvalid(ClientError):
    """``[why]``: the stream is not an XVA this pool can read (bad tar, bad ova.xml, too large)."""

    code = "IMPORT_ERROR"


class XvaTruncated(ClientError):
    """The stream ended before every disk was complete."""

    code = "IMPORT_ERROR_PREMATURE_EOF"


class XvaUnexpectedFile(ClientError):
    """``[expected, found]``: a tar member where another was due (order, name outside ``Ref:N/``)."""

    code = "IMPORT_ERROR_UNEXPECTED_FILE"


class XvaChecksumFailed(ClientError):
    """``[which]``: a chunk whose checksum does not match its data (xapi names the block)."""

    code = "IMPORT_ERROR_SOME_CHECKSUMS_FAILED"


class XvaIncompatibleVersion(ClientError):
    """The XVA was written by a newer xapi than the one this pool speaks."""

    code = "IMPORT_INCOMPATIBLE_VERSION"


class XvaObjectMissing(ClientError):
    """``[id]``: ova.xml refers to an object it does not hold (or a disk this pool lacks)."""

    code = "IMPORT_ERROR_FAILED_TO_FIND_OBJECT"
