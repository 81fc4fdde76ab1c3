"""Backup formats and streams with no HTTP or database in them: the pool database's XML dump
(``xmldb``), xapi's XVA (a tar of ``ova.xml`` and 1 MiB disk chunks), its compression, and
reading a VDI image's guest bytes sparsely."""
