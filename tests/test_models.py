"""Wire data -> models with the one converter: tolerant of unknown keys, nulls, new enums."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from createos_sandbox_async import (
    Bandwidth,
    DestroyResult,
    EgressView,
    Host,
    HostStatus,
    ProtocolError,
    RootfsCatalog,
    SandboxDisk,
    SandboxStatus,
    SandboxView,
    Shape,
    WhoAmI,
)
from createos_sandbox_async._convert import structure, unstructure
from createos_sandbox_async._secret import SecretStr
from createos_sandbox_async.models import view_from_create

FULL_VIEW = {
    "id": "sb_01JABCDEFGHJKMNPQRSTVWXYZ0",
    "status": "running",
    "ip": "192.168.0.12",
    "vcpu": 1,
    "mem_mib": 256,
    "disk_mib": 10240,
    "created_at": "2026-05-01T10:00:00Z",
    "ingress_enabled": True,
    "ingress_url_template": "https://<port>-sb_1.box.test",
    "name": "brave-otter",
    "running_at": "2026-05-01T10:00:00.123456789+02:00",
    "destroyed_at": None,
    "spawn_ms": 42.5,
    "shape": "s-1vcpu-256mb",
    "rootfs": "devbox:1",
    "region": "eu",
    "egress": ["pypi.org", "1.1.1.1:53"],
    "envs": ["TOKEN"],
    "ssh_pubkeys": [],
    "created_by": "u_1",
    "bandwidth_ingress_bytes": 10,
    "paused_at": None,
    "last_resumed_at": None,
    "forked_from": None,
    "auto_pause_after_seconds": 600,
    "a_field_from_the_future": {"nested": True},
}


def test_full_view() -> None:
    view = structure(FULL_VIEW, SandboxView)
    assert view.status is SandboxStatus.RUNNING
    assert view.status == "running"
    assert view.created_at == dt.datetime(2026, 5, 1, 10, 0, tzinfo=dt.UTC)
    assert view.running_at is not None and view.running_at.microsecond == 123456
    assert view.running_at.utcoffset() == dt.timedelta(hours=2)
    assert view.egress == ("pypi.org", "1.1.1.1:53")
    assert view.envs == ("TOKEN",)
    assert view.paused_at is None
    assert view.auto_pause_after_seconds == 600
    assert view.spawn_ms == 42.5


def test_unknown_status_kept_as_str() -> None:
    view = structure({"id": "sb_1", "status": "hibernating"}, SandboxView)
    assert view.status == "hibernating"
    assert type(view.status) is str


def test_nulls_mean_absent() -> None:
    data = {k: None for k in FULL_VIEW}
    data["id"] = "sb_1"
    view = structure(data, SandboxView)
    assert view.egress == () and view.ingress_enabled is False and view.ip is None
    assert view.status == "running"


def test_unparsable_datetime_becomes_none() -> None:
    view = structure({"id": "sb_1", "created_at": "yesterday"}, SandboxView)
    assert view.created_at is None


def test_models_are_frozen() -> None:
    view = structure({"id": "sb_1"}, SandboxView)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        view.status = "paused"  # type: ignore[misc]


@pytest.mark.parametrize("bad", [[1], "x", None, 5, {"status": "running"}])
def test_wrong_shape_is_protocol_error(bad: object) -> None:
    with pytest.raises(ProtocolError, match="SandboxView"):
        structure(bad, SandboxView)


def test_create_response_normalized_to_view() -> None:
    created = {
        "id": "sb_2",
        "ip": "10.0.0.2",
        "shape": "s-1vcpu-256mb",
        "vcpu": 1,
        "mem_mib": 256,
        "disk_mib": 10240,
        "spawn_ms": 55.1,
        "mode": "legacy",
    }
    view = structure(view_from_create(created, ingress_enabled=True), SandboxView)
    assert view.status == "running"
    assert view.ingress_enabled is True
    assert view.created_at is None
    newer = dict(created, status="running", bandwidth_quota_bytes=5368709120)
    view = structure(view_from_create(newer, ingress_enabled=False), SandboxView)
    assert view.ingress_enabled is False
    assert view.bandwidth_quota_bytes == 5368709120


def test_catalog_models() -> None:
    shape = structure(
        {"id": "s-1vcpu-256mb", "vcpu": 1, "mem_mib": 256, "default_disk_mib": 10240}, Shape
    )
    assert shape.cpu_quota_pct is None
    catalog = structure(
        {
            "rootfs": ["devbox:1", "desktop:1"],
            "default": "devbox:1",
            "entries": [{"name": "old:1", "deprecated": True, "successor": "devbox:1"}],
        },
        RootfsCatalog,
    )
    assert catalog.rootfs == ("devbox:1", "desktop:1")
    assert catalog.entries[0].deprecated and catalog.entries[0].successor == "devbox:1"
    host = structure({"id": "h1", "status": "draining", "free_mib": 1, "vm_count": 2}, Host)
    assert host.status is HostStatus.DRAINING
    assert structure({"id": "h2", "status": "on-fire"}, Host).status == "on-fire"
    who = structure({"user_id": "u", "stats": {"running": 2, "paused": 1, "other": 0}}, WhoAmI)
    assert who.stats.running == 2 and who.stats.total == 0


def test_small_views() -> None:
    assert structure({"id": "sb", "status": "destroying"}, DestroyResult).status == "destroying"
    assert structure({"id": "sb", "egress": None}, EgressView).egress == ()
    bw = structure(
        {
            "id": "sb",
            "quota_bytes": -1,
            "used_bytes": 5,
            "ingress_bytes": 7,
            "remaining_bytes": -1,
            "capped": False,
        },
        Bandwidth,
    )
    assert bw.quota_bytes == -1
    disk = structure(
        {
            "disk_id": "disk_1",
            "name": "data",
            "kind": "s3",
            "config": {"bucket": "b", "endpoint": "https://s3"},
            "mount_path": "/mnt/data",
            "mount_status": "mounted",
        },
        SandboxDisk,
    )
    assert disk.config is not None and disk.config.bucket == "b"
    assert disk.mount_status == "mounted"


def test_unstructure_round_trip() -> None:
    view = structure(FULL_VIEW, SandboxView)
    plain = unstructure(view)
    assert plain["status"] == "running"
    assert plain["created_at"] == "2026-05-01T10:00:00+00:00"
    assert structure(plain, SandboxView) == view


def test_models_all_lists_what_models_exports() -> None:
    """``models.__all__`` holds every name the package face takes from ``models``."""
    import ast
    from pathlib import Path

    import createos_sandbox_async
    from createos_sandbox_async import models

    init = ast.parse(Path(createos_sandbox_async.__file__).read_text())
    taken = {
        alias.name
        for node in ast.walk(init)
        if isinstance(node, ast.ImportFrom) and node.module == "models" and node.level == 1
        for alias in node.names
    }
    assert len(taken) > 30
    assert taken <= set(models.__all__), sorted(taken - set(models.__all__))
    namespace: dict[str, object] = {}
    exec("from createos_sandbox_async.models import *", namespace)
    assert taken <= set(namespace)


def test_model_modules_do_not_configure_the_converter() -> None:
    """Importing a model module changes no converter: _convert configures itself alone."""
    import ast
    from pathlib import Path

    import createos_sandbox_async

    root = Path(createos_sandbox_async.__file__).parent
    for name in ("models.py", "_resource_models.py"):
        tree = ast.parse((root / name).read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "converter" not in names, name
        assert "_convert" not in imported, name
    assert structure("tok_123456", SecretStr).get_secret_value() == "tok_123456"
