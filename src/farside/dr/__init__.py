"""Disaster recovery: recovering VMs and vApps from a foreign pool's metadata into this pool."""
