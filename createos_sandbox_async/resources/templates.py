"""Custom root filesystems built from a Dockerfile (``session.templates``; WIRE §14).

Builds are asynchronous and can take minutes: ``create`` returns at once with status ``pending``;
follow the build with :meth:`Templates.follow_logs` (which ends at the final frame) or poll
:meth:`Templates.get` until ``ready`` / ``failed``.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio

from .._body import BodyStream
from .._convert import structure
from .._ndjson import NDJSONDecoder
from .._pagination import Pager
from .._resource import Resource
from .._resource_models import Template, TemplateLogEvent
from .._validate import check_int, check_optional_seconds, check_seconds, id_segment
from ..errors import ProtocolError, StreamInterruptedError

if TYPE_CHECKING:
    from .._transport import Transport

__all__ = ["TemplateLogStream", "Templates"]

_TERMINAL = ("ready", "failed")
_KNOWN_LOG_KEYS = frozenset({"line", "ts", "level", "attempt", "final", "status"})
#: Plain-text logs are read up to this size; a build log bigger than this is cut (and says so).
_MAX_TEXT_LOG = 64 * 1024 * 1024


def _template_path(template_id: object, suffix: str = "") -> str:
    return "/v1/templates/" + id_segment("template_id", template_id) + suffix


def _attempt(attempt: object) -> int | None:
    return None if attempt is None else check_int("attempt", attempt, 1)


def _log_event(frame: Any) -> TemplateLogEvent:
    """NDJSON frame -> event; keys this SDK does not know are kept in ``extra``."""
    if not isinstance(frame, dict):
        raise ProtocolError("template log frame is not a JSON object")
    extra = {k: v for k, v in frame.items() if k not in _KNOWN_LOG_KEYS}
    attempt = frame.get("attempt")
    return TemplateLogEvent(
        line=frame.get("line"),
        ts=frame.get("ts"),
        level=frame.get("level"),
        attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
        final=frame.get("final") is True,
        status=frame.get("status"),
        extra=extra,
    )


class TemplateLogStream(BodyStream):
    """Async iterator of :class:`TemplateLogEvent` ending with the ``final`` event.

    Also an async context manager; leaving early closes the connection. The server may close the
    stream before the final frame; the build status is then read with ``GET`` and, if the build is
    over, a final event is made up from it (``extra={"synthesized": True}``); if it is still
    running, :class:`StreamInterruptedError` is raised (follow again, or poll ``get``).

    Raises:
        StreamInterruptedError: The stream ended while the build was still running.
        StreamStalledError: ``idle_timeout`` was given and nothing arrived for that long.
        NotFoundError: No such template (raised on the first iteration).
    """

    def __init__(
        self,
        transport: Transport,
        template_id: str,
        attempt: int | None,
        idle_timeout: float | None,
        timeout: float | None,
    ) -> None:
        self._transport = transport
        self.template_id = template_id
        self._attempt = attempt
        self._idle = idle_timeout
        self._timeout = timeout
        self._decoder = NDJSONDecoder(heartbeat=None)
        self._queue: deque[TemplateLogEvent] = deque()
        self._done = False
        #: ``ready`` or ``failed`` once the final event arrived.
        self.status: str | None = None

    async def __anext__(self) -> TemplateLogEvent:
        try:
            while not self._queue:
                if self._done:
                    raise StopAsyncIteration
                await self._pump()
            return self._queue.popleft()
        except StopAsyncIteration:
            raise
        except BaseException:
            await self.aclose()
            raise

    async def _pump(self) -> None:
        if self._response is None:
            await self._open_body(
                self._transport,
                _template_path(self.template_id, "/logs"),
                {"follow": True, "attempt": self._attempt},
                timeout=self._timeout,
                idle=self._idle,
                what=f"template {self.template_id} build log",
            )
        try:
            chunk = await self._read_body()
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError):
            await self._ended_early()
            return
        if chunk:
            self._accept(self._decoder.feed(chunk))
            if self._done:  # the final frame: drained, the connection goes back to the pool
                await self._close_body(drain=True)
            return
        self._accept(self._decoder.finish())
        if not self._done:
            await self._ended_early()

    def _accept(self, frames: list[Any]) -> None:
        for frame in frames:
            event = _log_event(frame)
            self._queue.append(event)
            if event.final:
                self.status = event.status
                self._done = True
                return

    async def _ended_early(self) -> None:
        """The stream closed before ``final``: ask the template itself whether the build is over."""
        await self._close_body()
        data = await self._transport.request("GET", _template_path(self.template_id))
        template = structure(data, Template)
        if template.status in _TERMINAL:
            self.status = str(template.status)
            self._queue.append(
                TemplateLogEvent(final=True, status=self.status, extra={"synthesized": True})
            )
            self._done = True
            return
        raise StreamInterruptedError(
            f"template log stream ended before the final frame (build is {template.status})"
        )


class Templates(Resource):
    """Template builds of the account: ``session.templates``.

    A template is a root filesystem built from a Dockerfile; create sandboxes from it with
    ``create(rootfs=template.id)``.

    Example:
        ```python
        tpl = await session.templates.create("py-tools", "FROM devbox:1\nRUN pip install rich")
        with anyio.fail_after(900):
            tpl = await session.templates.wait(tpl.id)
        sb = await session.sandboxes.create(shape="s-1vcpu-256mb", rootfs=tpl.id)
        ```
    """

    __slots__ = ()

    def __init__(self, transport: Transport) -> None:
        super().__init__(transport, "/v1/templates")

    def __repr__(self) -> str:
        return "Templates()"

    async def create(
        self, name: str, dockerfile: str, *, base: str | None = None, timeout: float | None = None
    ) -> Template:
        """Submit a build; returns at once with status ``pending``.

        The Dockerfile must have a single ``FROM`` of an allowed base and no ``COPY``/``ADD``
        (the server answers ``ValidationError`` otherwise). ``base`` picks the base rootfs.

        Args:
            name: The template's name.
            dockerfile: The Dockerfile's text.
            base: The base rootfs.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The template, ``pending``.

        Raises:
            ValidationError: The Dockerfile is refused, or the name is taken.
            PaymentRequiredError: The account has no credit.
            APIError: Another error status (a POST is resent only after 429/503).
        """
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty str")
        if not isinstance(dockerfile, str) or not dockerfile.strip():
            raise ValueError("dockerfile must be a non-empty str")
        body: dict[str, Any] = {"name": name, "dockerfile": dockerfile}
        if base is not None:
            if not isinstance(base, str) or not base:
                raise ValueError("base must be a non-empty str")
            body["base"] = base
        data = await self._transport.request("POST", self._base, json=body, timeout=timeout)
        return structure(data, Template)

    def list(
        self,
        *,
        limit: int | None = None,
        page_size: int | None = None,
        timeout: float | None = None,
    ) -> Pager[Template]:
        """Every template of the account, fetched page by page as you iterate.

        Args:
            limit: Yield at most this many.
            page_size: Templates per request.
            timeout: Seconds for each page's request (default: the session's).

        Returns:
            An async iterator of ``Template`` (``await ....to_list()`` for a list).
        """

        def convert(item: Any) -> Template:
            return structure(item, Template)

        return Pager(
            self._transport,
            self._base,
            convert,
            legacy_keys=("templates",),
            limit=limit,
            page_size=page_size,
            timeout=timeout,
        )

    async def get(
        self, template_id: str, *, include_dockerfile: bool = False, timeout: float | None = None
    ) -> Template:
        """One template.

        Args:
            template_id: The template's id.
            include_dockerfile: Also return its Dockerfile.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The template, with its build ``status``.

        Raises:
            NotFoundError: No such template.
        """
        params = {"include": "dockerfile"} if include_dockerfile else None
        data = await self._transport.request(
            "GET", self._item("template_id", template_id), params=params, timeout=timeout
        )
        return structure(data, Template)

    async def delete(self, template_id: str, *, timeout: float | None = None) -> None:
        """Delete a template; sandboxes already built from it are unaffected.

        Args:
            template_id: The template's id.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            NotFoundError: No such template.
        """
        await self._transport.request(
            "DELETE", self._item("template_id", template_id), timeout=timeout
        )

    async def logs(
        self, template_id: str, *, attempt: int | None = None, timeout: float | None = None
    ) -> str:
        """The build log so far, as text.

        Args:
            template_id: The template's id.
            attempt: Only this build attempt (default: all of them).
            timeout: Seconds for the whole call.

        Returns:
            The log.

        Raises:
            NotFoundError: No such template.
        """
        params = {"attempt": _attempt(attempt)}
        path = self._item("template_id", template_id, "/logs")
        parts: list[bytes] = []
        size = 0
        async with self._transport.stream("GET", path, params=params, timeout=timeout) as resp:
            while size < _MAX_TEXT_LOG:
                chunk = await resp.content.read(_MAX_TEXT_LOG - size)
                if not chunk:
                    break
                parts.append(chunk)
                size += len(chunk)
            if size >= _MAX_TEXT_LOG and not resp.content.at_eof():
                parts.append(b"\n[log truncated by createos_sandbox_async]\n")
            charset = resp.charset or "utf-8"
        return b"".join(parts).decode(charset, errors="replace")

    def follow_logs(
        self,
        template_id: str,
        *,
        attempt: int | None = None,
        idle_timeout: float | None = None,
        timeout: float | None = None,
    ) -> TemplateLogStream:
        """Stream build log events until the final one (``final=True``, ``status`` ready/failed).

        Use ``async with session.templates.follow_logs(tid) as log: async for ev in log: ...``.
        The server sends no heartbeats here, so there is no idle bound unless you pass
        ``idle_timeout`` (seconds; then :class:`StreamStalledError`). ``timeout`` bounds
        connecting and the response headers.

        Args:
            template_id: The template's id.
            attempt: Only this build attempt.
            idle_timeout: Seconds of silence before ``StreamStalledError`` (default: none).
            timeout: Seconds for connecting and the response headers.

        Returns:
            A ``TemplateLogStream`` of ``TemplateLogEvent``; nothing is sent until it is
            iterated.
        """
        self._item("template_id", template_id)
        return TemplateLogStream(
            self._transport,
            template_id,
            _attempt(attempt),
            check_optional_seconds("idle_timeout", idle_timeout),
            timeout,
        )

    async def wait(
        self, template_id: str, *, poll_interval: float = 2.0, timeout: float | None = None
    ) -> Template:
        """Poll until the build is ``ready`` or ``failed`` and return the template.

        Builds can take many minutes: bound the wait with ``timeout=`` (or ``anyio.fail_after``).

        Args:
            template_id: The template's id.
            poll_interval: Seconds between polls.
            timeout: Seconds for the whole wait, every poll included (default: no bound on the
                wait; each poll has the session's request timeout).

        Returns:
            The template, ``ready`` or ``failed`` (check ``status``; a failed build is not
            raised).

        Raises:
            APITimeoutError: ``timeout`` ran out first.
            NotFoundError: No such template.
        """
        check_seconds("poll_interval", poll_interval)
        poll = lambda: self._poll(template_id, poll_interval)  # noqa: E731
        return await self._within(timeout, poll, f"waiting for template {template_id}")

    async def _poll(self, template_id: str, poll_interval: float) -> Template:
        while True:
            template = await self.get(template_id)
            if template.status in _TERMINAL:
                return template
            await anyio.sleep(poll_interval)
