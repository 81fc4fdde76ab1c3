"""The LUN mirror behind ``farside mirror``: replication, split, reverse, resync and snapshots (docs/mirror.md)."""
