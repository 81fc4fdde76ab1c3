"""The messages built for the datamodel walk, over the SDK on one real server.

Roles and permissions, the pool's guest agent settings, licence state and coordinator messages,
host reads; each with xapi's answer on a one-host pool and its checks on bad input.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import XenAPI

from farside.model.roles import Role

from pools import PoolServer

pytestmark = pytest.mark.e2e

NOWHERE = "OpaqueRef:nowhere"


@pytest.fixture(scope="module")
def root(shared_server: PoolServer) -> Iterator[XenAPI.Session]:
    s = shared_server.session()
    yield s
    s.xenapi.session.logout()


def failure(call: object, *args: object) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        call(*args)  # type: ignore[operator]
    return list(info.value.details)


class TestRoles:
    def test_permissions_are_the_weaker_roles(self, root: XenAPI.Session) -> None:
        """A role's permissions are every role below it; a permission belongs to every role above."""
        x = root.xenapi
        by_name = {x.role.get_name_label(r): r for r in x.role.get_all()}
        names = x.role.get_permissions_name_label(by_name["vm-admin"])
        assert sorted(names) == ["read-only", "vm-operator"]
        assert set(x.role.get_permissions(by_name["read-only"])) == set()
        holders = {x.role.get_name_label(r) for r in x.role.get_by_permission(by_name["vm-admin"])}
        assert holders == {"vm-power-admin", "pool-operator", "pool-admin"}
        assert set(x.role.get_by_permission_name_label("vm-admin")) == {by_name[n] for n in holders}
        assert x.role.get_by_permission_name_label("no-such-permission") == []
        assert failure(x.role.get_permissions, NOWHERE) == ["HANDLE_INVALID", "role", NOWHERE]


class TestPool:
    def test_guest_agent_config(self, root: XenAPI.Session) -> None:
        """Keys are added once (MAP_DUPLICATE_KEY after), removed quietly even when absent."""
        x = root.xenapi
        pool = x.pool.get_all()[0]
        x.pool.add_to_guest_agent_config(pool, "auto_update_enabled", "false")
        assert x.pool.get_guest_agent_config(pool) == {"auto_update_enabled": "false"}
        assert failure(x.pool.add_to_guest_agent_config, pool, "auto_update_enabled", "true")[0] == "MAP_DUPLICATE_KEY"
        x.pool.remove_from_guest_agent_config(pool, "auto_update_enabled")
        x.pool.remove_from_guest_agent_config(pool, "auto_update_enabled")
        assert x.pool.get_guest_agent_config(pool) == {}

    def test_auth_thread_counts(self, root: XenAPI.Session) -> None:
        """Thread counts below one are refused with INVALID_VALUE, others read back."""
        x = root.xenapi
        pool = x.pool.get_all()[0]
        x.pool.set_local_auth_max_threads(pool, "4")
        assert x.pool.get_local_auth_max_threads(pool) == "4"
        assert failure(x.pool.set_ext_auth_max_threads, pool, "0") == ["INVALID_VALUE", "ext_auth_max_threads", "0"]

    def test_licence_state_and_extensions(self, root: XenAPI.Session) -> None:
        """An unlicensed pool that never expires, and no extensions anywhere."""
        x = root.xenapi
        pool = x.pool.get_all()[0]
        host = x.pool.get_master(pool)
        assert x.pool.get_license_state(pool) == {"edition": "free", "expiry": "never"}
        assert x.pool.has_extension(pool, "Cluster_host.get_cluster_config") is False
        assert x.host.has_extension(host, "anything") is False

    def test_coordinator_messages_on_one_host(self, root: XenAPI.Session) -> None:
        """The only host is the coordinator: designating it is a no-op, no supporters to recover."""
        x = root.xenapi
        pool = x.pool.get_all()[0]
        x.pool.designate_new_master(x.pool.get_master(pool))
        assert failure(x.pool.designate_new_master, NOWHERE) == ["HANDLE_INVALID", "host", NOWHERE]
        assert x.pool.recover_slaves() == []
        x.pool.sync_database()
        x.pool.detect_nonhomogeneous_external_auth(pool)

    def test_read_only_is_denied(self, shared_server: PoolServer) -> None:
        """A read-only user reads the licence state, and is refused the settings."""
        shared_server.add_user("pool-reader", Role.READ_ONLY, "pw")
        s = shared_server.session("pool-reader", "pw")
        try:
            pool = s.xenapi.pool.get_all()[0]
            assert s.xenapi.pool.get_license_state(pool)["expiry"] == "never"
            assert failure(s.xenapi.pool.add_to_guest_agent_config, pool, "k", "v")[0] == "RBAC_PERMISSION_DENIED"
            assert failure(s.xenapi.pool.sync_database)[0] == "RBAC_PERMISSION_DENIED"
        finally:
            s.xenapi.session.logout()


class TestHost:
    def test_list_methods_names_what_is_implemented(self, root: XenAPI.Session) -> None:
        """host.list_methods lists implemented messages, not refused ones."""
        methods = root.xenapi.host.list_methods()
        assert "VM.start" in methods and "host.list_methods" in methods
        assert "pool.enable_ha" not in methods

    def test_memory(self, root: XenAPI.Session) -> None:
        """Free memory is what a VM may still claim: at most the host's free memory."""
        x = root.xenapi
        host = x.pool.get_master(x.pool.get_all()[0])
        free = int(x.host.compute_free_memory(host))
        assert 0 <= free <= int(x.host_metrics.get_memory_total(x.host.get_metrics(host)))
        assert int(x.host.compute_memory_overhead(host)) >= 0
        assert failure(x.host.compute_free_memory, NOWHERE) == ["HANDLE_INVALID", "host", NOWHERE]
