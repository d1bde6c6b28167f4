"""What a request gets back: bounded body reads, JSend success decoding, request ids, and the
error raised locally when no key is configured.

The transport calls these on every answer; the status -> exception table itself is
``errors.make_api_error``.
"""

from __future__ import annotations

from typing import Any, Final

import aiohttp

from . import _json
from ._config import API_KEY_ENVS
from .errors import MAX_ERROR_BODY, AuthError, ProtocolError, redact_text

__all__ = [
    "MAX_BODY",
    "decode_jsend",
    "missing_key",
    "read_capped",
    "read_limited",
    "request_id_of",
]

#: Sentinel of ``decode_jsend``: the body did not decode (``None`` is valid JSON: ``null``).
_NOT_JSON: Final[Any] = object()


#: The most a buffered 2xx answer may hold once decoded (a gzip body counts expanded), and so
#: also the whole output of a collected exec (``exec(timeout=...)``), which reads its stream
#: body the same way. Far above any JSON answer of the API (a buffered exec's output is capped
#: at a few MiB per channel by the service), far below what would hurt the client: a hostile
#: server's gzip bomb or endless body ends in ProtocolError, not in gigabytes held. Bigger
#: output belongs on a stream (``exec_stream``, ``download_iter``), which is never buffered.
MAX_BODY: Final = 64 * 1024 * 1024


async def read_capped(
    resp: aiohttp.ClientResponse, method: str, path: str, limit: int = MAX_BODY
) -> bytes:
    """A 2xx body, read whole but never past ``limit`` bytes (ProtocolError beyond)."""
    content = resp.content
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            resp.close()  # the rest is never read: do not return the connection to the pool
            raise ProtocolError(
                f"{method} {path}: HTTP {resp.status} answer is over {limit >> 20} MiB "
                f"({limit} bytes), the most a buffered answer may hold; read big output as a "
                "stream (exec_stream, files.download_iter)"
            )
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_limited(resp: aiohttp.ClientResponse, limit: int = MAX_ERROR_BODY) -> bytes:
    """Read at most ``limit`` bytes of a body (error bodies may come from anything)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await resp.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def request_id_of(resp: aiohttp.ClientResponse, secrets: tuple[str, ...] = ()) -> str | None:
    """The response's request id; a hostile or buggy server may echo a secret into it."""
    headers = resp.headers
    rid = headers.get("X-Request-Id") or headers.get("X-Fc-Request-Id")
    return redact_text(rid, secrets) if rid and secrets else rid


def missing_key(method: str, path: str) -> AuthError:
    """The 401 raised locally when an authenticated route is called with no key configured."""
    looked = ", ".join(API_KEY_ENVS)
    return AuthError(
        f"no API key: pass api_key= to AsyncSession or set one of {looked} "
        "(looked at the argument, then those variables; all unset or blank); nothing was sent",
        status=401,
        method=method,
        endpoint=path,
    )


def decode_jsend(
    status: int,
    raw: bytes,
    method: str,
    path: str,
    resp: aiohttp.ClientResponse,
    secrets: tuple[str, ...] = (),
) -> Any:
    """JSend success decoding (WIRE §4 rules 1, 3, 4)."""
    if status == 204 or status == 205:
        return None
    if not raw:
        raise ProtocolError(f"{method} {path}: HTTP {status} with an empty body")
    try:
        doc = _json.loads(raw)
    except ValueError:
        doc = _NOT_JSON  # raised below, outside the handler: the decode error (its ``doc`` is
        # the whole body) must not ride along as ``__context__``
    if doc is _NOT_JSON:
        ctype = redact_text(resp.headers.get("Content-Type", "?"), secrets)
        raise ProtocolError(
            f"{method} {path}: HTTP {status} body is not JSON (Content-Type {ctype})"
        )
    if type(doc) is dict and doc.get("status") == "success":
        return doc.get("data")
    raise ProtocolError(f"{method} {path}: HTTP {status} body is not a JSend success envelope")
