"""What a sandbox sees of the host: the read-only system directories and /etc files it gets, the
user it runs as, the PATH and pid 1 it starts with; and the blocking helpers that build and
remove a sandbox's tree."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat

SANDBOX_MARKER = "CREATEOS_LOCAL_SANDBOX"  # set on commands only with isolation "none"
SANDBOX_UID = 65534  # "nobody": what sandboxes run as on the host when the emulator is root
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# pid 1 of every sandbox: its stdin is the lifeline (see runtime.py). `cat` blocks on
# it; EOF (status 0, or 1 if unreadable) ends pid 1 and with it the whole namespace. A `cat`
# killed by a signal (a tenant's `kill`) is restarted. `wait` reaps orphans meanwhile.
INIT_SCRIPT = (
    'echo ready; exec 3<&0 >/dev/null 2>&1 </dev/null; trap "" TERM INT HUP; '
    "while :; do cat <&3 >/dev/null & wait $!; [ $? -gt 128 ] || exit 0; done"
)
SYSTEM_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_ETC_FILES = (
    "bash.bashrc",
    "profile",
    "inputrc",
    "localtime",
    "timezone",
    "mime.types",
    "debian_version",
    "issue",
    "lsb-release",
    "os-release",
    "protocols",
    "services",
    "host.conf",
    "gai.conf",
    "locale.alias",
    "login.defs",
    "shells",
    "ld.so.conf",
    "ld.so.cache",
    "ca-certificates.conf",
    "magic",
    "magic.mime",
    "environment",
    "wgetrc",
    "papersize",
)
# Bound read-only (each mount costs boot time, so only what common tools need).
_ETC_DIRS = ("alternatives", "profile.d", "ssl/certs", "python3")


def etc_entries() -> list[tuple[str, str, bytes | str]]:
    """(relative path, kind, payload) of host /etc files worth copying into every sandbox."""
    out: list[tuple[str, str, bytes | str]] = []
    for name in _ETC_FILES:
        path = f"/etc/{name}"
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out.append((f"etc/{name}", "link", os.readlink(path)))
            elif stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_IROTH and st.st_size < 1 << 20:
                with open(path, "rb") as fh:
                    out.append((f"etc/{name}", "file", fh.read()))
        except OSError:
            continue
    return out


def etc_dirs() -> list[str]:
    """Host /etc directories bound read-only (world-readable, no secrets)."""
    found = []
    names = list(_ETC_DIRS)
    with contextlib.suppress(OSError):
        names += [n for n in os.listdir("/etc") if n.startswith("python3.")]
    for name in names:
        path = f"/etc/{name}"
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_IROTH:
                found.append(name)
    return found


def remove_tree(path: str) -> None:
    """rm -rf (blocking). Directories a command made read-only are made writable again first."""
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        for dirpath, _dirs, _files in os.walk(path):
            with contextlib.suppress(OSError):
                os.chmod(dirpath, 0o700)
        shutil.rmtree(path, ignore_errors=True)


def chown_tree(root: str, owner: tuple[int, int]) -> None:
    """Give a freshly built tree to the sandbox user (links themselves, never their targets)."""
    uid, gid = owner
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)
