"""Backup formats: the pool database's XML dump (``xmldb``)."""
