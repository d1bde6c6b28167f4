"""File helpers for tools: shell scripts in the sandbox that raise the builtin file errors.

``FileNotFoundError``, ``IsADirectoryError``, ... are what a model (and a framework's own file
tools) can act on; the scripts map each failure to 100 + its errno (see ``_ERRORS``).
"""

from __future__ import annotations

import posixpath

import attrs

from createos_sandbox_async import NotFoundError, Sandbox

from ._alive import ensure_alive

__all__ = [
    "FileInfo",
    "exists",
    "list_dir",
    "make_dir",
    "read_file",
    "realpath",
    "remove",
    "stat",
    "write_file",
]

# Exit statuses of the file scripts: 100 + the Linux errno, away from what sh and the tools use.
_ERRORS: dict[int, type[OSError]] = {
    102: FileNotFoundError,
    113: PermissionError,
    117: FileExistsError,
    120: NotADirectoryError,
    121: IsADirectoryError,
}
_NOT_REGULAR = 122  # a FIFO, a device, a socket: not read or written as a file
_REFUSED = 150  # removing the working directory or one of its ancestors

# Every existing ancestor of $p must be a directory (else 120); the first one found must be
# writable when $w = 1 (else 113).
_PARENTS = r"""
q=${p%/*}; [ -n "$q" ] || q=/
while :; do
  if [ -e "$q" ] && [ ! -d "$q" ]; then exit 120; fi
  if [ -d "$q" ]; then if [ "$w" = 1 ] && [ ! -w "$q" ]; then exit 113; fi; break; fi
  [ "$q" = / ] && break
  q=${q%/*}; [ -n "$q" ] || q=/
done
"""

_SCRIPTS = {
    # Where a read or a write really goes (symlinks followed), after checking it can.
    "resolve": r"""
p=$1 w=$2
if [ -d "$p" ]; then exit 121; fi
if [ -e "$p" ] && [ ! -f "$p" ]; then exit 122; fi
if [ -e "$p" ]; then
  if [ "$w" = 1 ]; then [ -w "$p" ] || exit 113; else [ -r "$p" ] || exit 113; fi
else
  if [ "$w" != 1 ]; then
    q=${p%/*}; while [ -n "$q" ] && [ ! -e "$q" ]; do q=${q%/*}; done
    if [ -n "$q" ] && [ ! -d "$q" ]; then exit 120; fi
    exit 102
  fi
"""
    + _PARENTS
    + r"""
fi
realpath -m -- "$p"
""",
    "stat": r"""
p=$1
if [ -d "$p" ]; then echo d; exit 0; fi
if [ -f "$p" ]; then [ -r "$p" ] || exit 113; printf 'f '; wc -c < "$p"; exit 0; fi
if [ -e "$p" ]; then echo o; exit 0; fi
q=${p%/*}; while [ -n "$q" ] && [ ! -e "$q" ]; do q=${q%/*}; done
if [ -n "$q" ] && [ ! -d "$q" ]; then exit 120; fi
exit 102
""",
    "list": r"""
p=$1
if [ ! -d "$p" ]; then [ -e "$p" ] && exit 120; exit 102; fi
[ -r "$p" ] && [ -x "$p" ] || exit 113
find -H "$p" -mindepth 1 -maxdepth 1 -printf '%Y %y %s %f\0'
""",
    "mkdir": r"""
p=$1 w=1
if [ -d "$p" ]; then exit 0; fi
if [ -e "$p" ] || [ -L "$p" ]; then exit 117; fi
"""
    + _PARENTS
    + r"""
mkdir -p -- "$p"
""",
    # $2 is the working directory: it and its ancestors are never removed.
    "remove": r"""
p=$1 wd=$2
if [ ! -e "$p" ] && [ ! -L "$p" ]; then exit 102; fi
if [ ! -L "$p" ]; then
  r=$(realpath -- "$p") || exit 1
  case "$wd/" in "$r"/* | "$r"//*) exit 150 ;; esac
  if [ "$r" = / ]; then exit 150; fi
fi
if [ -d "$p" ] && [ ! -L "$p" ]; then rm -rf -- "$p"; else rm -f -- "$p"; fi
""",
    "exists": r"""
[ -e "$1" ]
""",
    "realpath": r"""
realpath -m -- "$1"
""",
}


@attrs.frozen
class FileInfo:
    """One file or directory: ``size`` in bytes for a regular file, None otherwise."""

    name: str
    path: str
    is_dir: bool
    size: int | None


def _check_path(path: str, *, normalize: bool = True) -> str:
    if not isinstance(path, str):
        raise TypeError(f"path must be a str, got {type(path).__name__}")
    if not posixpath.isabs(path):
        raise ValueError(f"path must be absolute, got {path!r}")
    if "\0" in path:
        raise ValueError("path must not contain a NUL character")
    return posixpath.normpath(path) if normalize else path


async def _script(sandbox: Sandbox, name: str, *args: str) -> str:
    """Run one file script; its error statuses become the builtin OSError subclasses."""
    try:
        res = await sandbox.exec("sh", ["-c", _SCRIPTS[name], "sh", *args], timeout=120)
    except NotFoundError:
        await ensure_alive(sandbox)  # SandboxGoneError when the sandbox is what is missing
        raise
    if res.exit_code == 0 and not res.error:
        return res.stdout
    if res.error is not None or res.exit_code < 0:
        await ensure_alive(sandbox)
    path = args[0] if args else None
    code = res.exit_code
    if code in _ERRORS:
        raise _ERRORS[code](_errno(code), _STRERROR[code], path)
    if code == _NOT_REGULAR:
        raise OSError(f"not a regular file: {path!r}")
    if code == _REFUSED:
        raise ValueError("cannot remove the working directory or one of its ancestors")
    if code >= 128:
        await ensure_alive(sandbox)
    detail = res.stderr.strip().splitlines()[-1:] or [f"exit status {code}"]
    raise OSError(f"{name} {path!r} failed: {detail[0][:300]}")


def _errno(code: int) -> int:
    return code - 100


_STRERROR = {
    102: "No such file or directory",
    113: "Permission denied",
    117: "File exists",
    120: "Not a directory",
    121: "Is a directory",
}


async def read_file(sandbox: Sandbox, path: str) -> bytes:
    """The file's bytes (symlinks followed); builtin file errors for path-level failures."""
    path = _check_path(path)
    real = (await _script(sandbox, "resolve", path, "0")).rstrip("\n")
    try:
        return await sandbox.files.download(real or path)
    except NotFoundError:
        await ensure_alive(sandbox)
        raise FileNotFoundError(2, _STRERROR[102], path) from None


async def write_file(sandbox: Sandbox, path: str, data: bytes) -> None:
    """Write ``data`` (parents created, an existing symlink written through)."""
    path = _check_path(path)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    real = (await _script(sandbox, "resolve", path, "1")).rstrip("\n")
    try:
        await sandbox.files.upload(real or path, bytes(data))
    except NotFoundError:
        await ensure_alive(sandbox)
        raise FileNotFoundError(2, _STRERROR[102], path) from None


async def stat(sandbox: Sandbox, path: str) -> FileInfo:
    """What is at ``path`` (symlinks followed)."""
    path = _check_path(path)
    out = (await _script(sandbox, "stat", path)).split()
    name = posixpath.basename(path) or "/"
    if out[:1] == ["f"] and len(out) == 2 and out[1].isdigit():
        return FileInfo(name, path, False, int(out[1]))
    return FileInfo(name, path, out[:1] == ["d"], None)


async def list_dir(sandbox: Sandbox, path: str) -> list[FileInfo]:
    """The entries of a directory, sorted by name (a symlink reports its target's kind)."""
    path = _check_path(path)
    out = await _script(sandbox, "list", path)
    entries = []
    for record in out.split("\0"):
        if not record:
            continue
        followed, kind, size, name = record.split(" ", 3)
        is_dir = followed == "d"
        full = posixpath.join(path, name)
        known = kind == "f" and size.isdigit()
        entries.append(FileInfo(name, full, is_dir, int(size) if known else None))
    return sorted(entries, key=lambda e: e.path)


async def make_dir(sandbox: Sandbox, path: str) -> None:
    """``mkdir -p``: ``FileExistsError`` when a file is in the way."""
    await _script(sandbox, "mkdir", _check_path(path))


async def remove(sandbox: Sandbox, path: str, *, working_dir: str) -> None:
    """Remove a file, a symlink or a whole tree; never ``working_dir`` or its ancestors."""
    await _script(sandbox, "remove", _check_path(path), _check_path(working_dir))


async def realpath(sandbox: Sandbox, path: str) -> str:
    """``path`` with every symlink resolved in the sandbox; missing components kept."""
    # Not normalised first: ``link/..`` climbs from the link's target, as it does for commands.
    checked = _check_path(path, normalize=False)
    return (await _script(sandbox, "realpath", checked)).rstrip("\n")


async def exists(sandbox: Sandbox, path: str) -> bool:
    """Whether something exists at ``path`` (a dangling symlink does not count)."""
    try:
        await _script(sandbox, "exists", _check_path(path))
    except OSError:
        return False
    return True
