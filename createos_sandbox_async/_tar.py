"""Directories as tar archives: pack one for ``upload_dir``, unpack one safely for ``download_dir``.

Packing writes to an anonymous temporary file (never memory) with every owner set to root.
Unpacking refuses any member that would land outside the target (absolute paths, ``..``, links
pointing out, chains of links) before extracting, and extracts with tarfile's ``data`` filter
where Python has it: two guards for the same promise.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from typing import IO

__all__ = ["safe_extract", "tar_directory"]


def tar_directory(source: str) -> IO[bytes]:
    """Tar ``source``'s contents into an anonymous temporary file, rewound for reading."""
    archive = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it

    def owner_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    try:
        with tarfile.open(fileobj=archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for entry in sorted(os.listdir(source)):
                tar.add(os.path.join(source, entry), arcname=entry, filter=owner_root)
        archive.seek(0)
    except BaseException:
        archive.close()
        raise
    return archive


def _inside(root: str, candidate: str) -> bool:
    """True when ``candidate`` (already absolute and normalised) is ``root`` or below it."""
    return candidate == root or candidate.startswith(root.rstrip(os.sep) + os.sep)


def _check_member(root: str, member: tarfile.TarInfo) -> None:
    """Refuse a tar member that would escape ``root`` or is not a plain file/dir/link."""
    name = member.name
    where = os.path.normpath(os.path.join(root, name))
    if (
        os.path.isabs(name)
        or ".." in name.replace("\\", "/").split("/")
        or not _inside(root, where)
    ):
        raise ValueError(f"refusing to extract {name!r}: it would land outside {root!r}")
    if member.issym():
        link = os.path.normpath(os.path.join(os.path.dirname(where), member.linkname))
        if os.path.isabs(member.linkname) or not _inside(root, link):
            raise ValueError(
                f"refusing to extract symlink {name!r} -> {member.linkname!r}: it points outside "
                f"{root!r}"
            )
    elif member.islnk():
        link = os.path.normpath(os.path.join(root, member.linkname))
        if os.path.isabs(member.linkname) or not _inside(root, link):
            raise ValueError(
                f"refusing to extract hard link {name!r} -> {member.linkname!r}: it points "
                f"outside {root!r}"
            )
    elif not (member.isfile() or member.isdir()):
        raise ValueError(f"refusing to extract {name!r}: special files are not copied")


def safe_extract(archive_path: str, target: str) -> None:
    """Check every member first, then extract with the stdlib ``data`` filter as a second guard."""
    os.makedirs(target, exist_ok=True)
    root = os.path.realpath(target)
    with tarfile.open(archive_path, mode="r:") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(root, member)
        _check_link_chains(root, members)
        try:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, members=members, filter="data")
            else:  # pragma: no cover - Python < 3.11.4
                tar.extractall(root, members=members)
        except tarfile.FilterError as exc:  # the second guard: same promise, same type
            raise ValueError(f"refusing to extract: {exc}") from exc


def _parts(path: str) -> list[str]:
    return [p for p in path.replace("\\", "/").split("/") if p and p != "."]


def _check_link_chains(root: str, members: list[tarfile.TarInfo]) -> None:
    """Resolve every member the way extraction will: through the archive's own symlinks (and
    symlinks already under ``root``). Each link can look inside on its own while a chain of them
    leads out (``a -> .``, then ``a/b -> ..``, then ``a/b/file``)."""
    links = {"/".join(_parts(m.name)): m.linkname for m in members if m.issym()}
    for member in members:
        parts = _parts(member.name)
        if member.issym():
            parent = _resolve_in(root, parts[:-1], links)
            escapes = (
                parent is None or _resolve_in(root, parent + _parts(member.linkname), links) is None
            )
        elif member.islnk():
            escapes = (
                _resolve_in(root, parts[:-1], links) is None
                or _resolve_in(root, _parts(member.linkname), links) is None
            )
        else:
            escapes = _resolve_in(root, parts, links) is None
        if escapes:
            raise ValueError(
                f"refusing to extract {member.name!r}: through the archive's symlinks it would "
                f"land outside {root!r}"
            )


def _resolve_in(root: str, parts: list[str], links: dict[str, str]) -> list[str] | None:
    """``parts`` with every symlink followed, as a path below ``root``; None if it leaves."""
    pending = list(reversed(parts))
    cur: list[str] = []
    hops = 0
    while pending:
        comp = pending.pop()
        if comp == "..":
            if not cur:
                return None
            cur.pop()
            continue
        cur.append(comp)
        key = "/".join(cur)
        link = links.get(key)
        if link is None:
            on_disk = os.path.join(root, *cur)
            link = os.readlink(on_disk) if os.path.islink(on_disk) else None
        if link is None:
            continue
        hops += 1
        if hops > 40 or os.path.isabs(link) or link.startswith(("/", "\\")):
            return None
        cur.pop()
        pending.extend(reversed(_parts(link)))
    return cur
