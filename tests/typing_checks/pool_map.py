"""Checked by mypy in tests/test_to_dict.py (never run): what ``SandboxPool.map`` returns."""

from __future__ import annotations

from typing import assert_type

from createos_sandbox_async import AsyncSession, Sandbox, SandboxPool


async def square(sandbox: Sandbox, n: int) -> int:
    return n * n


async def name(sandbox: Sandbox, n: int) -> str:
    return str(n)


async def check(session: AsyncSession) -> None:
    async with SandboxPool(session, shape="s-1vcpu-256mb") as pool:
        assert_type(await pool.map(square, range(3)), list[int])
        assert_type(await pool.map(name, [1, 2]), list[str])
        assert_type(await pool.map(square, [1], return_exceptions=True), list[int | Exception])
        flag: bool = False
        assert_type(await pool.map(square, [1], return_exceptions=flag), list[int | Exception])
