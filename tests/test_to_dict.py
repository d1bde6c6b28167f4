"""JSON-able models: ``to_dict`` (json.dumps and FastAPI accept it, secrets left out) and the
static type of ``SandboxPool.map``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from createos_sandbox_async import (
    AccessTokenCreated,
    ExecResult,
    ProcessEvent,
    ScreenConnection,
    Template,
    TemplateLogEvent,
    to_dict,
)
from createos_sandbox_async._convert import structure
from createos_sandbox_async._reap import ReapOutcome, ReapResult

TOKEN = "sbt_secret_value_0123456789"

ROOT = Path(__file__).resolve().parent.parent


def test_secret_fields_are_left_out_not_masked() -> None:
    created = structure(
        {"token": TOKEN, "enabled": True, "created_at": "2026-12-04T14:51:07.123456789Z"},
        AccessTokenCreated,
    )
    out = to_dict(created)
    assert out == {
        "enabled": True,
        "created_at": "2026-12-04T14:51:07.123456+00:00",
        "rotated_at": None,
    }
    screen = structure(
        {
            "screen_id": "s1",
            "port": 5900,
            "path": "/vnc",
            "token": TOKEN,
            "url": f"wss://x?t={TOKEN}",
        },
        ScreenConnection,
    )
    out = to_dict(screen)
    assert "token" not in out and "url" not in out
    assert TOKEN not in json.dumps(out)


def test_every_value_becomes_json() -> None:
    event = ProcessEvent(kind="data", seq=3, stream="stdout", data=b"\x00\xffhi")
    assert to_dict(event)["data"] == "AP9oaQ=="  # bytes as base64
    log = TemplateLogEvent(line="x", extra={"step": (1, 2), "when": dt.date(2026, 1, 2)})
    assert to_dict(log)["extra"] == {"step": [1, 2], "when": "2026-01-02"}
    template = structure({"id": "t", "name": "n", "status": "ready"}, Template)
    assert json.loads(json.dumps(to_dict(template)))["status"] == "ready"
    reap = ReapResult(
        dry_run=True,
        outcomes=(
            ReapOutcome(
                id="sb1",
                name="pool-a-20261204000000-1",
                status="paused",
                created_at=dt.datetime(2026, 12, 4, tzinfo=dt.UTC),
                action="would destroy",
            ),
        ),
    )
    assert json.loads(json.dumps(to_dict(reap)))["outcomes"][0]["created_at"] == (
        "2026-12-04T00:00:00+00:00"
    )


@pytest.mark.parametrize("bad", [None, 3, "text", {"a": 1}, object()])
def test_only_models_are_accepted(bad: Any) -> None:
    with pytest.raises(TypeError, match="to_dict takes a model"):
        to_dict(bad)


def test_fastapi_jsonable_encoder_accepts_the_result() -> None:
    from fastapi.encoders import jsonable_encoder

    result = ExecResult(stdout="é\n", stderr="", exit_code=0, exec_ms=1.5)
    plain = to_dict(result)
    assert jsonable_encoder(plain) == plain == json.loads(json.dumps(plain))


@pytest.mark.anyio
async def test_a_live_sandbox_view_round_trips_through_json(createos_sandbox: Any) -> None:
    await createos_sandbox.refresh()
    out = json.loads(json.dumps(to_dict(createos_sandbox)))
    assert out["id"] == createos_sandbox.id and out["status"] == "running"
    assert dt.datetime.fromisoformat(out["created_at"]) == createos_sandbox.data.created_at


def test_pool_map_is_typed_so_the_result_type_is_inferred(tmp_path: Path) -> None:
    from mypy import api

    snippet = ROOT / "tests" / "typing_checks" / "pool_map.py"
    out, err, code = api.run(
        ["--strict", "--cache-dir", str(ROOT / ".mypy_cache"), "--no-error-summary", str(snippet)]
    )
    assert code == 0, out + err
