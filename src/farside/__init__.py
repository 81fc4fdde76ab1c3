"""Farside: disaster recovery for virtual-machine pools, speaking XenAPI."""

__version__ = "0.1.0"
