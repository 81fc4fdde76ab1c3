"""The data-source messages xapi gives VM and host (their RRDs' sources), declared once for both."""

from farside.model.roles import Role
from farside.model.schema import M, Message


def data_source_messages(cls: str, param: str, recorder: Role) -> list[Message]:
    """``get_data_sources``, ``query_data_source`` (read-only), ``record_data_source`` and
    ``forget_data_source_archives`` (``recorder`` and stronger) of ``cls``, whose first parameter
    xapi names ``param``."""
    target = (param, f"{cls} ref")
    named = [target, ("data_source", "string")]
    return [
        M("get_data_sources", Role.READ_ONLY, [target], "data_source record set"),
        M("query_data_source", Role.READ_ONLY, named, "float"),
        M("record_data_source", recorder, named, "void"),
        M("forget_data_source_archives", recorder, named, "void"),
    ]
