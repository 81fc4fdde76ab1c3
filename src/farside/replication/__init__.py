"""Metadata replication: the pool's persistent state written onto metadata VDIs, and read back."""
