"""The core under every framework adapter: one sandbox per conversation, bounded output, errors.

Three pieces, each used by every adapter so they behave alike:

- :class:`SandboxHolder`: the sandbox of one conversation (an agent run, an MCP session). It is
  created on first use and at most once however many tool calls race for it; its id is recorded
  the moment the create returns, before any setup that can fail, and also when the caller is
  cancelled mid-create; it can be reattached by id, destroyed explicitly, or destroyed after an
  idle bound. A sandbox that is gone is an error (:class:`SandboxGoneError`), never silently
  replaced by a fresh one.
- :class:`OutputBudget`: the one truncation policy. It keeps the head and the tail of a
  command's output within a byte bound and says whether anything was cut.
- :func:`tool_error`: the one mapping from an exception to what a model may read. Never a
  traceback, never a secret; a 429 (and other transient failures) is marked retryable.

:func:`command_request` and :func:`run_command` run a command the way a tool wants it run (in a
working directory, with extra environment variables, stdin at EOF, done when the command exits
even if a background child keeps its output open); the file helpers (:func:`read_file`, ...)
raise the builtin file errors (``FileNotFoundError``, ...) that a model can act on.
"""

from __future__ import annotations

import collections
import posixpath
import re
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
from anyio.lowlevel import checkpoint

from createos_sandbox_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AsyncSession,
    AuthError,
    CommandError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    Sandbox,
    SandboxStateError,
    ServerError,
    StreamError,
    ValidationError,
)

from ._alive import DEAD, SandboxGoneError, ensure_alive, is_alive
from ._files import (
    FileInfo,
    exists,
    list_dir,
    make_dir,
    read_file,
    realpath,
    remove,
    stat,
    write_file,
)

__all__ = [
    "CommandOutcome",
    "FileInfo",
    "OutputBudget",
    "SandboxGoneError",
    "SandboxHolder",
    "ToolError",
    "command_request",
    "ensure_alive",
    "exists",
    "is_alive",
    "list_dir",
    "make_dir",
    "read_file",
    "realpath",
    "remove",
    "run_command",
    "stat",
    "tool_error",
    "write_file",
]

#: How long a create (or a destroy) may hold a cancelled caller: long enough for the service to
#: answer, so the id is known and nothing leaks; bounded, so a dead service cannot hang a cancel.
CREATE_GRACE = 120.0
DESTROY_GRACE = 30.0


# -- the sandbox of one conversation ------------------------------------------------------------


class SandboxHolder:
    """The sandbox of one conversation: created lazily, at most once, reattachable by id.

    Construction does no I/O. ``sandbox_id`` attaches to an existing sandbox on first use
    (:class:`SandboxGoneError` if it is gone); without it the first use creates one with
    ``create_options`` (``session.sandboxes.create(**create_options)``). ``setup`` runs once on the
    sandbox after the id is recorded (create or attach); if it fails, the next use runs it again.
    ``idle_timeout`` (seconds) lets :meth:`reap_idle` destroy the sandbox once unused that long.

    The holder destroys only when asked (:meth:`destroy`, :meth:`reap_idle`); an adapter decides
    whether a conversation's end destroys (MCP: yes; pydantic-ai: never, by its contract).
    """

    def __init__(
        self,
        session: AsyncSession,
        *,
        sandbox_id: str | None = None,
        create_options: Mapping[str, Any] | None = None,
        setup: Callable[[Sandbox], Awaitable[None]] | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        if sandbox_id is not None and (not isinstance(sandbox_id, str) or not sandbox_id):
            raise ValueError(f"sandbox_id must be a non-empty string, got {sandbox_id!r}")
        if idle_timeout is not None and not (
            isinstance(idle_timeout, int | float) and 0 < idle_timeout < float("inf")
        ):
            raise ValueError(f"idle_timeout must be a positive number, got {idle_timeout!r}")
        self._session = session
        self._id = sandbox_id
        self._options = dict(create_options or {"shape": "s-1vcpu-256mb"})
        self._setup = setup
        self.idle_timeout = idle_timeout
        self.created = False  # True once this holder created the sandbox it holds
        self._sandbox: Sandbox | None = None
        self._ready = False
        self._gone: str | None = None  # why the sandbox is gone, once it is
        self._lock: anyio.Lock | None = None
        self._in_use = 0
        self._last_used = 0.0

    def __repr__(self) -> str:
        return f"SandboxHolder(id={self._id!r}, created={self.created})"

    @property
    def id(self) -> str | None:
        """The sandbox id: given at construction, or set as soon as the create returns."""
        return self._id

    @property
    def gone(self) -> bool:
        """Whether the sandbox was destroyed (by :meth:`destroy` or the idle bound) or vanished."""
        return self._gone is not None

    async def sandbox(self) -> Sandbox:
        """The sandbox, created or attached on first use (concurrent first uses share one)."""
        if self._gone is not None:
            raise SandboxGoneError(self._gone, sandbox_id=self._id)
        if self._sandbox is None or not self._ready:
            if self._lock is None:  # no await between test and set: one lock per holder
                self._lock = anyio.Lock()
            async with self._lock:
                if self._gone is not None:
                    raise SandboxGoneError(self._gone, sandbox_id=self._id)
                if self._sandbox is None:
                    self._sandbox = await (self._attach() if self._id else self._create())
                if not self._ready:
                    if self._setup is not None:
                        await self._setup(self._sandbox)
                    self._ready = True
        self._last_used = anyio.current_time()
        return self._sandbox

    @asynccontextmanager
    async def use(self) -> AsyncIterator[Sandbox]:
        """The sandbox, marked in use (the idle bound never destroys it under a running tool)."""
        self._in_use += 1
        try:
            yield await self.sandbox()
        finally:
            self._in_use -= 1
            self._last_used = anyio.current_time()

    async def _create(self) -> Sandbox:
        sandbox: Sandbox | None = None
        # Shielded: a cancel arriving while the POST is in flight would lose an id the service
        # has already allocated. The create finishes (bounded), the id is recorded, and the
        # cancellation is delivered at the next checkpoint.
        with anyio.move_on_after(CREATE_GRACE, shield=True):
            sandbox = await self._session.sandboxes.create(**self._options)
            self._id = sandbox.id
            self.created = True
        if sandbox is None:
            raise APITimeoutError(f"creating a sandbox did not finish within {CREATE_GRACE} s")
        await checkpoint()
        return sandbox

    async def _attach(self) -> Sandbox:
        assert self._id is not None
        try:
            sandbox = await self._session.sandboxes.get(self._id)
        except NotFoundError:
            self._gone = f"sandbox {self._id} does not exist (any more)"
            raise SandboxGoneError(self._gone, sandbox_id=self._id) from None
        status = str(sandbox.status)
        if status in DEAD:
            self._gone = f"sandbox {self._id} is {status}"
            raise SandboxGoneError(self._gone, sandbox_id=self._id)
        if status in ("paused", "pausing", "error"):
            if status == "pausing":
                await sandbox.wait_until("paused")
            await sandbox.resume()
        if str(sandbox.status) != "running":
            try:
                await sandbox.wait_until("running")
            except SandboxStateError as exc:
                self._gone = f"sandbox {self._id} is {exc.status}"
                raise SandboxGoneError(self._gone, sandbox_id=self._id) from None
        return sandbox

    def mark_gone(self, reason: str) -> None:
        """Record that the sandbox vanished (found dead by a command): later uses raise."""
        self._gone = reason

    async def destroy(self) -> bool:
        """Destroy the sandbox (shielded, bounded); True if there was one. Later uses raise."""
        sandbox_id = self._id
        self._gone = self._gone or f"sandbox {sandbox_id} was destroyed"
        if sandbox_id is None:
            return False
        sandbox = self._sandbox
        with anyio.move_on_after(DESTROY_GRACE, shield=True):
            if sandbox is None:
                try:
                    sandbox = await self._session.sandboxes.get(sandbox_id)
                except NotFoundError:
                    return False
            await sandbox.destroy()
        return True

    async def reap_idle(self) -> None:
        """Destroy the sandbox once it is unused for ``idle_timeout`` s; run it in a task group.

        Returns after destroying (or at once without an idle bound); cancel it to stop watching.
        """
        if self.idle_timeout is None:
            return
        while self._gone is None:
            idle_for = anyio.current_time() - self._last_used
            if self._sandbox is not None and self._in_use == 0 and idle_for >= self.idle_timeout:
                self._gone = (
                    f"sandbox {self._id} was destroyed after {self.idle_timeout:g} s without use"
                )
                await self.destroy()
                return
            # in use: look again after a full bound (a tool running for long is not idle)
            delay = self.idle_timeout - idle_for if self._in_use == 0 else self.idle_timeout
            await anyio.sleep(max(delay, 0.05))


# -- output ---------------------------------------------------------------------------------------


class OutputBudget:
    """Keeps the first ``head`` and the last ``tail`` bytes (UTF-8) of everything added.

    ``render()`` gives the kept text, with a marker naming how many bytes were cut in between,
    and whether anything was cut. Memory stays bounded however much is added; ``seen`` counts
    every byte added.
    """

    def __init__(self, head: int, tail: int) -> None:
        for name, value in (("head", head), ("tail", tail)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        self._head = bytearray()
        self._head_max = head
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_size = 0
        self._tail_max = tail
        self.seen = 0

    @classmethod
    def of(cls, limit: int) -> OutputBudget:
        """A budget of ``limit`` bytes, half head and half tail."""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 2:
            raise ValueError(f"the output limit must be an int >= 2, got {limit!r}")
        return cls(limit // 2, limit - limit // 2)

    def add(self, text: str) -> None:
        data = text.encode("utf-8", "surrogatepass")
        self.seen += len(data)
        room = self._head_max - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data or not self._tail_max:
            return
        self._tail.append(data)
        self._tail_size += len(data)
        while self._tail and self._tail_size - len(self._tail[0]) >= self._tail_max:
            self._tail_size -= len(self._tail.popleft())

    @property
    def truncated(self) -> bool:
        return self.seen > len(self._head) + min(self._tail_size, self._tail_max)

    def render(self) -> tuple[str, bool]:
        tail = b"".join(self._tail)[-self._tail_max :] if self._tail_max else b""
        if not self.truncated:
            return (bytes(self._head) + tail).decode("utf-8", "replace"), False
        cut = self.seen - len(self._head) - len(tail)
        # A cut may split a character: drop its pieces rather than show replacement characters.
        head = bytes(self._head).decode("utf-8", "ignore")
        return f"{head}\n... [{cut} bytes cut] ...\n{tail.decode('utf-8', 'ignore')}", True


# -- errors a model can read --------------------------------------------------------------------

#: The longest message a tool error carries (a server message may be long).
MAX_ERROR_MESSAGE = 1000


@attrs.frozen
class ToolError:
    """What a model sees when a tool fails: a message, and whether trying again may work."""

    message: str
    retryable: bool = False
    retry_after: float | None = None

    def __str__(self) -> str:
        if not self.retryable:
            return self.message
        when = f" in {self.retry_after:g} s" if self.retry_after is not None else " shortly"
        return f"{self.message} (temporary: try again{when})"

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.message, "retryable": self.retryable, "retry_after": self.retry_after}


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_MESSAGE else text[: MAX_ERROR_MESSAGE - 3] + "..."


def tool_error(exc: BaseException) -> ToolError:
    """The tool error for ``exc``: a short message without traceback or secret.

    SDK errors carry no credential (they are scrubbed where they are raised); any exception
    this table does not know is reported by its type name only, since its text may hold anything.
    """
    if isinstance(exc, ToolError):
        return exc
    if isinstance(exc, SandboxGoneError):
        return ToolError(_clip(f"{exc}; create a new sandbox to continue"))
    if isinstance(exc, RateLimitError):
        return ToolError(
            "the CreateOS service is rate limiting requests (429)", True, exc.retry_after
        )
    if isinstance(exc, ServerError):
        return ToolError(f"the CreateOS service failed ({exc.status})", True, exc.retry_after)
    if isinstance(exc, APITimeoutError | TimeoutError):
        return ToolError("the operation timed out", True)
    if isinstance(exc, APIConnectionError | StreamError):
        return ToolError("the connection to the CreateOS service failed", True)
    if isinstance(exc, AuthError | PaymentRequiredError | PermissionDeniedError):
        return ToolError(
            f"the CreateOS service refused the request ({exc.status}); "
            "the operator must fix the account or API key"
        )
    if isinstance(exc, NotFoundError):
        return ToolError(_clip(f"not found: {exc.message}"))
    if isinstance(exc, ValidationError | APIError):
        return ToolError(_clip(f"the CreateOS service rejected the request: {exc.message}"))
    if isinstance(exc, CommandError):
        return ToolError(_clip(str(exc)))
    if isinstance(exc, OSError) and exc.filename is not None:
        return ToolError(_clip(f"{type(exc).__name__}: {exc.strerror or 'error'}: {exc.filename}"))
    if isinstance(exc, TypeError | ValueError | OSError):
        return ToolError(_clip(f"invalid input: {exc}"))
    return ToolError(f"internal error ({type(exc).__name__})")


# -- commands -------------------------------------------------------------------------------------

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

#: Runs ``"$@"`` in ``$1`` with stdin at EOF; ``$3 = 1`` reads ``export`` lines from stdin first;
#: ``$4 = 1`` sends stderr into stdout (one stream, in the order the command wrote it).
#: Its output goes through FIFOs relayed by ``cat``, so the wrapper (and the exec) ends when
#: the command itself exits: a background child still holding the FIFOs open gets ``$2`` seconds
#: of grace, then its relay is stopped. The command's exit status is the wrapper's (a command
#: killed by signal N exits 128 + N, as in any shell).
_WRAPPER = r"""
wd=$1 grace=$2 e=$3 m=$4
shift 4
if [ "$e" = 1 ]; then eval "$(cat)" || exit 125; fi
cd -- "$wd" || exit 125
d=$(mktemp -d "${TMPDIR:-/tmp}/.createos-run-XXXXXX") || exit 125
mkfifo "$d/o" "$d/e" || { rm -rf "$d"; exit 125; }
cat "$d/o" &
o=$!
r=
if [ "$m" != 1 ]; then
  cat "$d/e" >&2 &
  r=$!
fi
if command -v -- "$1" >/dev/null 2>&1; then
  if [ "$m" = 1 ]; then
    "$@" </dev/null >"$d/o" 2>&1
  else
    "$@" </dev/null >"$d/o" 2>"$d/e"
  fi
  c=$?
else
  if [ "$m" != 1 ]; then printf '%s: command not found\n' "$1" >"$d/e" 2>/dev/null; fi
  if [ "$m" = 1 ]; then printf '%s: command not found\n' "$1" >"$d/o"; else : >"$d/o"; fi
  c=127
fi
(sleep "$grace"; kill "$o" $r) >/dev/null 2>&1 </dev/null &
k=$!
wait "$o" $r 2>/dev/null
kill "$k" 2>/dev/null
rm -rf "$d"
exit "$c"
"""

#: Seconds a background child may keep the command's output open after the command exits.
OUTPUT_GRACE = 1.0


def _env_exports(env: Mapping[str, str]) -> str:
    lines = []
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise ValueError(f"env: {name!r} is not a valid variable name")
        if not isinstance(value, str):
            raise TypeError(f"env: the value of {name} must be a str")
        if "\0" in value:
            raise ValueError(f"env: the value of {name} contains a NUL character")
        lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


def command_request(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str] | None = None,
    grace: float = OUTPUT_GRACE,
    merge_output: bool = False,
) -> tuple[str, list[str], str | None]:
    """``(cmd, args, stdin)`` for ``sb.exec_stream`` that runs ``argv`` the way tools need it.

    The command starts in ``cwd`` with stdin at EOF and ``env`` added to its environment. The
    values travel in the request body's stdin (never in the command line, so not in a process
    listing), and need no create-time declaration. A missing program exits 127.
    ``merge_output`` sends stderr into stdout at the source, so the two keep the order in which
    the command wrote them (separate streams are relayed separately and may interleave late).
    """
    if isinstance(argv, str) or not isinstance(argv, Sequence):
        raise TypeError("argv must be a sequence of str")
    if not argv:
        raise ValueError("argv must not be empty")
    for item in argv:
        if not isinstance(item, str):
            raise TypeError("argv must be a sequence of str")
        if "\0" in item:
            raise ValueError("argv items must not contain a NUL character")
    if not isinstance(cwd, str) or not posixpath.isabs(cwd):
        raise ValueError(f"cwd must be an absolute path, got {cwd!r}")
    stdin = _env_exports(env) if env else None
    flags = ["1" if stdin else "0", "1" if merge_output else "0"]
    return "sh", ["-c", _WRAPPER, "sh", cwd, f"{grace:g}", *flags, *argv], stdin


@attrs.frozen
class CommandOutcome:
    """How a command ended: ``exit_code`` None when it was stopped (deadline or output limit)."""

    exit_code: int | None
    timed_out: bool = False
    over_limit: bool = False


async def run_command(
    sandbox: Sandbox,
    argv: Sequence[str],
    on_output: Callable[[str, str], Awaitable[None] | None],
    *,
    cwd: str,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    read_limit: int | None = None,
    merge_output: bool = False,
) -> CommandOutcome:
    """Run ``argv`` in ``sandbox``, handing each output chunk to ``on_output(kind, text)``.

    The command is streamed: a ``timeout``, more than ``read_limit`` bytes of output, or a
    cancelled caller closes the stream and the service kills the command's process tree (what
    it started with ``setsid`` keeps running). A sandbox destroyed under the command raises
    :class:`SandboxGoneError`; other SDK errors propagate. With ``merge_output`` every chunk is
    ``"stdout"``, stderr included, in the order the command wrote it.
    """
    cmd, args, stdin = command_request(argv, cwd=cwd, env=env, merge_output=merge_output)
    exit_code: int | None = None
    read = 0
    over = False
    try:
        with anyio.move_on_after(timeout) as scope:
            async with sandbox.exec_stream(cmd, args, stdin=stdin) as stream:
                async for event in stream:
                    if event.kind == "exit":
                        exit_code = event.exit_code
                        continue
                    text = event.data if event.kind != "error" else f"{event.data}\n"
                    kind = "stderr" if event.kind == "error" else event.kind
                    pending = on_output(kind, text)
                    if pending is not None:
                        await pending
                    read += len(text)  # characters: a bound on memory and time, not exact
                    if read_limit is not None and read > read_limit:
                        over = True
                        break  # leaving the block kills the command
    except (StreamError, NotFoundError, APIConnectionError):
        await ensure_alive(sandbox)  # a destroyed sandbox explains the failure
        raise
    killed = (exit_code is not None and exit_code >= 128) or (exit_code is None and not over)
    if killed and not scope.cancelled_caught:
        # Killed by a signal, or ended without a status: was the whole sandbox destroyed?
        await ensure_alive(sandbox)
    return CommandOutcome(exit_code, timed_out=scope.cancelled_caught, over_limit=over)
