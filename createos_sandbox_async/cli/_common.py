"""What every command shares: exit statuses, output (text or one JSON document), name -> id
resolution and the small parsers for flag values.

Only the SDK's public API is used here (``from createos_sandbox_async import ...``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import enum
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

import attrs

from createos_sandbox_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AsyncSession,
    AuthError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    Sandbox,
    SecretStr,
    ValidationError,
)

# -- exit statuses (docs/cli.md lists them; keep the two in step) ---------------------------------

OK = 0
FAILED = 1  # anything not below; also "some of several items failed"
USAGE = 2  # bad arguments or flag values, a bad remote path: nothing was sent
NOT_FOUND = 4  # 404, or no sandbox/resource with that name
AUTH = 5  # 401 / 403: no key, a wrong key, not allowed
PAYMENT = 6  # 402: no credit
REJECTED = 7  # 400 / 409 / 422: the server refused the request (invalid state, conflict)
RATE_LIMITED = 8  # 429 after the retries
SERVER = 9  # 5xx, or another HTTP status
UNREACHABLE = 10  # no answer: DNS, refused, reset, TLS
TIMEOUT = 11  # a deadline ran out
LOCAL_FILE = 12  # a local file is missing, unreadable, unwritable or a directory
NOT_STARTED = 127  # exec/shell: the command could not be started (the shell's convention)
INTERRUPTED = 130  # Ctrl-C


class CliError(Exception):
    """A failure the CLI reports as one line with a chosen exit status."""

    def __init__(self, message: str, status: int = FAILED) -> None:
        super().__init__(message)
        self.status = status


def usage_error(message: str) -> NoReturn:
    raise CliError(message, USAGE)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and a JSON document with --output json)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{self.prog}: {message} (see: {self.prog} --help)", USAGE)


def exit_status(exc: BaseException) -> int:
    """The documented exit status of an exception (CLI, SDK or local OS error)."""
    if isinstance(exc, CliError):
        return exc.status
    if isinstance(exc, NotFoundError):
        return NOT_FOUND
    if isinstance(exc, AuthError | PermissionDeniedError):
        return AUTH
    if isinstance(exc, PaymentRequiredError):
        return PAYMENT
    if isinstance(exc, ValidationError):
        return REJECTED
    if isinstance(exc, RateLimitError):
        return RATE_LIMITED
    if isinstance(exc, APIError):
        return SERVER
    if isinstance(exc, APIConnectionError):
        return UNREACHABLE
    if isinstance(exc, APITimeoutError):
        return TIMEOUT
    if isinstance(exc, OSError):
        return LOCAL_FILE
    if isinstance(exc, ValueError | TypeError):
        return USAGE  # the SDK checks arguments before sending and names the bad one
    return FAILED


def error_message(exc: BaseException) -> str:
    """One line: the SDK's messages never hold a secret; OS errors name the file."""
    if isinstance(exc, OSError) and exc.filename is not None and not isinstance(exc, APIError):
        return f"{exc.filename}: {exc.strerror or exc}"
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


# -- output ---------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Models (attrs classes) -> plain JSON values; datetimes as ISO text; secrets left out."""
    if isinstance(value, SecretStr):
        return None
    if attrs.has(type(value)):
        return {
            f.name: jsonable(getattr(value, f.name))
            for f in attrs.fields(type(value))
            if not isinstance(getattr(value, f.name), SecretStr)
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


class Output:
    """Text for people, or exactly one JSON document on stdout per command (``--output json``)."""

    def __init__(self, mode: str) -> None:
        self.json = mode == "json"
        self.emitted = False

    def document(self, doc: Any) -> None:
        """The command's JSON document (ignored in text mode); at most one is ever printed."""
        if self.json and not self.emitted:
            self.emitted = True
            sys.stdout.write(json.dumps(jsonable(doc), indent=2, sort_keys=True) + "\n")
            sys.stdout.flush()

    def text(self, line: str = "") -> None:
        """A line for people (ignored in JSON mode)."""
        if not self.json:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def note(self, line: str) -> None:
        """Progress or a hint: stderr, so stdout stays clean for scripts."""
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def sandbox_doc(sb: Sandbox, **extra: Any) -> dict[str, Any]:
    """A sandbox as JSON: every SandboxView field (stable keys, null when unknown), plus extras."""
    doc: dict[str, Any] = jsonable(sb.data)
    doc.update(extra)
    return doc


# -- the command context --------------------------------------------------------------------------

Handler = Callable[["Context", argparse.Namespace], Awaitable[int]]


class Context:
    """What a command handler gets: the output, and a session opened on first use."""

    def __init__(self, ns: argparse.Namespace) -> None:
        self.out = Output(getattr(ns, "output", "text"))
        self._api_key: str | None = getattr(ns, "api_key", None)
        self._base_url: str | None = getattr(ns, "base_url", None)
        self._session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            self._session = AsyncSession(self._api_key, base_url=self._base_url)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.aclose()


# -- names -> ids ---------------------------------------------------------------------------------

#: A reference with this prefix is an id and is used as is (the official CLI does the same with
#: ``sb-``; ids are spelled ``sb_<ULID>`` or ``sb-01K...``, WIRE §20.10).
_ID_PREFIXES = ("sb_", "sb-")


def looks_like_id(ref: str) -> bool:
    return ref.startswith(_ID_PREFIXES)


async def resolve_sandbox(session: AsyncSession, ref: str) -> Sandbox:
    """A sandbox by id or name, the way ``createos sandbox`` resolves it.

    An id (``sb_...``/``sb-...``) is fetched directly. A name is looked up among your sandboxes of
    every status; when several share it, the most recently created one wins.
    """
    ref = ref.strip()
    if not ref:
        usage_error("give a sandbox id or name")
    if looks_like_id(ref):
        return await session.sandboxes.get(ref)
    matches = [sb async for sb in session.sandboxes.list() if sb.data.name == ref]
    if not matches:
        raise CliError(f"no sandbox named {ref!r} (see: createos-sandbox ls --all)", NOT_FOUND)
    epoch = _dt.datetime.min.replace(tzinfo=_dt.UTC)

    def created(sb: Sandbox) -> _dt.datetime:
        return sb.data.created_at or epoch

    return max(matches, key=created)  # max keeps the first of equals: stable


# -- flag values ----------------------------------------------------------------------------------

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_env(pairs: Sequence[str], flag: str = "--env") -> dict[str, str]:
    """``KEY=VALUE`` pairs -> a dict, naming the bad one (its key only: values may be secret)."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            usage_error(f"{flag}: expected KEY=VALUE, got {key!r} without '='")
        if not _ENV_KEY.match(key):
            usage_error(f"{flag}: {key!r} is not a valid variable name")
        env[key] = value
    return env


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str, flag: str) -> int:
    """``90``, ``10m``, ``1h30m``, ``45s`` -> seconds."""
    raw = text.strip().lower()
    if raw.isdigit():
        return int(raw)
    found = _DURATION.match(raw)
    if not raw or found is None:
        usage_error(f"{flag}: use a duration like 10m, 1h or 90s, got {text!r}")
    hours, minutes, seconds = (int(g or 0) for g in found.groups())
    return hours * 3600 + minutes * 60 + seconds


def parse_on_off(text: str, flag: str) -> bool:
    value = text.strip().lower()
    if value in ("on", "true", "yes", "enable", "1"):
        return True
    if value in ("off", "false", "no", "disable", "0"):
        return False
    usage_error(f"{flag}: use on or off, got {text!r}")


def read_pubkeys(paths: Sequence[str]) -> list[str]:
    """The contents of SSH public key files (a missing file is a local file error)."""
    keys = []
    for path in paths:
        with open(os.path.expanduser(path), encoding="utf-8") as fh:
            key = fh.read().strip()
        if not key:
            raise CliError(f"{path}: the SSH public key file is empty", LOCAL_FILE)
        keys.append(key)
    return keys


def check_remote_path(path: str, what: str = "remote path") -> str:
    """Guest paths are absolute and have no ``..`` (WIRE §12): refused before sending."""
    if not path.startswith("/"):
        usage_error(f"{what} must be absolute (start with '/'), got {path!r}")
    if ".." in path.split("/"):
        usage_error(f"{what} must not contain a '..' segment, got {path!r}")
    return path


def is_tty() -> bool:
    """Both ends of the conversation are a terminal: prompts are allowed."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def confirm(question: str) -> bool:
    """Ask y/N on the terminal (only called when ``is_tty()``)."""
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


def require_force(force: bool, what: str, example: str) -> bool:
    """Deletes need ``--force`` off a terminal and a "y" on one; False means cancelled."""
    if force:
        return True
    if not is_tty():
        usage_error(f"not on a terminal: pass --force to confirm ({example})")
    return confirm(f"Permanently delete {what}?")


def add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options accepted before or after the command (after it, they override)."""
    default: Any = argparse.SUPPRESS
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        metavar="text|json",
        default="text" if top else default,
        help="text for people, or one JSON document on stdout (default: text)",
    )
    parser.add_argument(
        "--api-key",
        default=None if top else default,
        help="API key (default: CREATEOS_SANDBOX_API_KEY, then CREATEOS_API_KEY)",
    )
    parser.add_argument(
        "--base-url",
        default=None if top else default,
        help="API base URL (default: CREATEOS_SANDBOX_BASE_URL, else the service)",
    )


Subparsers = Any  # argparse's _SubParsersAction is private; typed loosely on purpose


def add_command(
    sub: Subparsers,
    common: argparse.ArgumentParser,
    name: str,
    handler: Handler,
    *,
    help: str,
    example: str,
    aliases: Sequence[str] = (),
) -> argparse.ArgumentParser:
    """One verb: its help line, an example in ``--help`` and the handler it runs."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        aliases=list(aliases),
        parents=[common],
        help=help,
        description=help[:1].upper() + help[1:] + ".",
        epilog="example:\n  " + example,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def add_group(sub: Subparsers, name: str, *, help: str, aliases: Sequence[str] = ()) -> Subparsers:
    """A verb with sub-verbs (``network create``, ``disk ls`` ...)."""
    parser = sub.add_parser(name, aliases=list(aliases), help=help, description=help)
    return parser.add_subparsers(dest=name + "_command", required=True)
