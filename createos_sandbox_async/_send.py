"""What a request sends: the JSON body, big bytes bodies as slices, query values.

Pure helpers of the transport's sending side; nothing here talks to the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final, TypeGuard

from . import _json

__all__ = [
    "REPLAYABLE",
    "body_size",
    "bound_after_upload",
    "encode_json",
    "query_params",
    "send_body",
    "with_content_length",
]


#: Bodies that can be sent again as they are.
REPLAYABLE: Final = (bytes, bytearray, memoryview)

# aiohttp warns (ResourceWarning) when a bytes body exceeds 1 MiB, because it writes it in one
# go. Bigger bodies go out as zero-copy 1 MiB memoryview slices from a fresh generator per
# attempt, so they stay replayable. Measured on a 64 MiB upload: a BytesIO per attempt cost 4x
# the client CPU per MiB and a full copy of the body (``BytesIO.getbuffer`` unshares it).
_LARGE_BODY: Final = 1024 * 1024

# Where asyncio's ``writelines`` is not trusted (Python < 3.12.9), aiohttp joins the request head
# and the first body piece into one new buffer: for a 1 MiB upload a 1 MiB copy, which callgrind
# counted as ~2/3 of the client's instructions per upload. So from 256 KiB up (where the copy
# costs more than one more ``send``) a bytes body goes out as the slices above, led by an empty
# one: the head is sent alone and the body straight from the caller's buffer.
try:
    from aiohttp.http_writer import SKIP_WRITELINES as _JOINS_HEAD
except ImportError:  # pragma: no cover - another aiohttp layout: assume the join
    _JOINS_HEAD = True
_SPLIT_FROM: Final = 256 * 1024 if _JOINS_HEAD else _LARGE_BODY + 1


def body_size(body: object) -> int | None:
    """The size of a body of known length (None: no body, or a stream), for the hooks."""
    return len(body) if isinstance(body, REPLAYABLE) else None


def is_large(body: object) -> TypeGuard[bytes]:
    """A bytes body sent as slices (and so with an explicit Content-Length)."""
    return type(body) is bytes and len(body) >= _SPLIT_FROM


async def _slices(body: bytes) -> AsyncIterator[memoryview]:
    view = memoryview(body)
    if _JOINS_HEAD:
        yield view[:0]  # aiohttp sends the head alone instead of copying it and the first slice
    for start in range(0, len(view), _LARGE_BODY):
        yield view[start : start + _LARGE_BODY]


def send_body(body: Any) -> Any:
    """The body to hand aiohttp for one attempt: big ``bytes`` as a fresh slice generator.

    The caller adds the Content-Length header (see ``with_content_length``), so the slices are
    not chunked.
    """
    return _slices(body) if is_large(body) else body


def with_content_length(headers: dict[str, str], body: object) -> dict[str, str]:
    """Headers plus Content-Length for a big bytes body (aiohttp cannot size a generator)."""
    return {**headers, "Content-Length": str(len(body))} if is_large(body) else headers


def encode_json(value: object) -> bytes:
    """The JSON body; a str the caller passed that UTF-8 cannot carry is a ValueError here."""
    try:
        return _json.dumps(value).encode()
    except UnicodeEncodeError:
        raise ValueError(
            "a str argument cannot be encoded as UTF-8 (it holds a lone surrogate)"
        ) from None


def query_params(params: Mapping[str, object]) -> dict[str, str | list[str]]:
    """Query values on the wire: booleans as true/false, None dropped, the rest as text."""
    out: dict[str, str | list[str]] = {}
    for key, value in params.items():
        if value is None:
            continue
        if value is True:
            out[key] = "true"
        elif value is False:
            out[key] = "false"
        elif isinstance(value, list | tuple):
            out[key] = [str(v) for v in value]
        else:
            out[key] = str(value)
    return out


async def bound_after_upload(
    body: Any, scope: asyncio.Timeout, after: float | None
) -> AsyncIterator[Any]:
    """Pass a streamed body through; once it is all sent, the answer has ``after`` seconds.

    An upload of unknown length gets a long bound for sending; waiting for the answer after the
    last byte is an ordinary response wait and gets the ordinary bound. The attempt's timeout is
    only ever moved in, never out.
    """
    async for chunk in body:
        yield chunk
    if after is not None:
        when = asyncio.get_running_loop().time() + after
        current = scope.when()
        if current is None or when < current:
            scope.reschedule(when)
