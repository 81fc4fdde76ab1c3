"""SR.probe for file SRs: what a LUN directory holds, in XenServer's probe XML."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from farside.storage.lun import Lun, check_usable


def probe_xml(path: Path) -> str:
    """``<SRlist>`` with one ``<SR>`` if the LUN holds an SR, none if it is empty.

    ``pool_metadata_detected`` is true when the SR holds a metadata VDI, the sign that a pool's
    metadata replicates to it (what the DR wizard looks for).
    """
    lun = Lun(check_usable(path))
    if not lun.formatted:
        return '<?xml version="1.0" ?>\n<SRlist/>\n'
    identity = lun.identity()
    metadata = any(r.get("type") == "metadata" for r in lun.vdi_records().values())
    return (
        '<?xml version="1.0" ?>\n<SRlist>\n\t<SR>\n'
        f"\t\t<UUID>{escape(identity['uuid'])}</UUID>\n"
        f"\t\t<name_label>{escape(identity.get('name_label', ''))}</name_label>\n"
        f"\t\t<name_description>{escape(identity.get('name_description', ''))}</name_description>\n"
        f"\t\t<pool_metadata_detected>{'true' if metadata else 'false'}</pool_metadata_detected>\n"
        "\t</SR>\n</SRlist>\n"
    )
