"""VM export and import in xapi's XVA format: ``ova.xml`` (ova.py), the export (exporter.py), the
import (importer.py) and the HTTP handlers (endpoints.py). The tar and chunk streams are in
``farside.backup``."""
