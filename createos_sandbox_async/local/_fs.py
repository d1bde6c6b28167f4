"""Path handling confined to a sandbox's tree: openat2(RESOLVE_IN_ROOT), so symlinks made inside a
sandbox can never lead the emulator (which runs with more rights) out of that tree."""

from __future__ import annotations

import ctypes
import errno
import os
import stat

_O_PATH = getattr(os, "O_PATH", 0o10000000)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_SYS_OPENAT2 = 437  # same number on every architecture (unified syscall table)
_MAX_HOPS = 40


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_have_openat2: list[bool] = [True]


def _openat2(dirfd: int, path: str, flags: int, mode: int) -> int:
    if not flags & os.O_CREAT:
        mode = 0  # openat2 rejects a mode without O_CREAT
    how = _OpenHow(flags | os.O_CLOEXEC, mode, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    fd = _syscall(
        ctypes.c_long(_SYS_OPENAT2),
        ctypes.c_int(dirfd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def _open_nofollow(dirfd: int, path: str, flags: int, mode: int) -> int:
    """Fallback for kernels without openat2: walk components, refusing every symlink."""
    parts = [p for p in path.split("/") if p and p != "."]
    cur = os.dup(dirfd)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            os.close(cur)
            cur = nxt
        if not parts:
            return os.dup(cur)
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=cur)
    finally:
        os.close(cur)


def open_in_root(rootfd: int, path: str, flags: int, mode: int = 0o644) -> int:
    """Open `path` as seen from inside the tree rooted at `rootfd` (absolute symlinks and `..`
    are clamped to the root)."""
    rel = path.lstrip("/") or "."
    if _have_openat2[0]:
        try:
            return _openat2(rootfd, rel, flags, mode)
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EPERM):
                raise
            _have_openat2[0] = False
    return _open_nofollow(rootfd, rel, flags, mode)


def validate_guest_path(path: str | None) -> str:
    """Absolute, no `..` segment, no NUL; returns the normalised path. Raises ValueError."""
    if not path:
        raise ValueError("path is required")
    if not path.startswith("/"):
        raise ValueError("path must be absolute")
    if "\x00" in path:
        raise ValueError("path must not contain NUL bytes")
    parts = path.split("/")
    if ".." in parts:
        raise ValueError("path must not contain '..' segments")
    norm = "/" + "/".join(p for p in parts if p and p != ".")
    return norm


class View:
    """The filesystem a sandbox's commands see: its own tree at `/`, plus read-only host mounts.

    `canonical()` resolves symlinks exactly as the sandbox would (so `/bin/ls` lands in the
    host's read-only `/usr`), reading the tree only through root-confined descriptors.
    """

    def __init__(self, root: str, ro_mounts: dict[str, str], virtual: tuple[str, ...] = ()) -> None:
        self.root = root
        self.ro_mounts = sorted(ro_mounts.items(), key=lambda kv: -len(kv[0]))
        self.virtual = virtual

    def is_virtual(self, inside: str) -> bool:
        """On a kernel filesystem the sandbox mounts over its tree (/proc, /dev)?"""
        return any(inside == v or inside.startswith(v + "/") for v in self.virtual)

    def ro_host_path(self, inside: str) -> str | None:
        """The host path behind `inside` if it lies on a read-only host mount, else None."""
        for prefix, host in self.ro_mounts:
            if inside == prefix or inside.startswith(prefix + "/"):
                return host + inside[len(prefix) :]
        return None

    def _lstat_readlink(self, rootfd: int, inside: str) -> tuple[os.stat_result, str | None] | None:
        host = self.ro_host_path(inside)
        try:
            if host is not None:
                st = os.lstat(host)
                return st, (os.readlink(host) if stat.S_ISLNK(st.st_mode) else None)
            parent, _, name = inside.rpartition("/")
            pfd = open_in_root(rootfd, parent or "/", _O_PATH | os.O_DIRECTORY)
            try:
                st = os.lstat(name, dir_fd=pfd)
                link = os.readlink(name, dir_fd=pfd) if stat.S_ISLNK(st.st_mode) else None
                return st, link
            finally:
                os.close(pfd)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def canonical(self, rootfd: int, path: str) -> str:
        """Resolve every symlink of `path` the way the sandbox sees it. Raises OSError(ELOOP)."""
        pending = [p for p in path.split("/") if p and p != "."]
        pending.reverse()
        cur: list[str] = []
        hops = 0
        missing = False
        while pending:
            comp = pending.pop()
            if comp == "..":
                if cur:
                    cur.pop()
                continue
            cand = [*cur, comp]
            if missing:
                cur = cand
                continue
            found = self._lstat_readlink(rootfd, "/" + "/".join(cand))
            if found is None:
                missing = True
                cur = cand
                continue
            _, link = found
            if link is None:
                cur = cand
                continue
            hops += 1
            if hops > _MAX_HOPS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
            if link.startswith("/"):
                cur = []
            pending.extend(reversed([p for p in link.split("/") if p and p != "."]))
        return "/" + "/".join(cur)
