"""Routes for files: a streamed upload (written under a temporary name, then renamed into place)
and a streamed download, every path resolved inside the sandbox's tree (see `_fs`)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import TYPE_CHECKING

from aiohttp import web

from . import _ids
from ._fs import open_in_root, validate_guest_path
from ._http import fail, ok
from .faults import FAULT, FrameWriter, StreamEnded, abort_connection
from .runtime import SandboxRuntime

if TYPE_CHECKING:
    from .app import Emulator

MAX_FILE_BYTES = 524_288_000


def register(app: web.Application, emu: Emulator) -> None:
    """Add the files routes."""
    h = _Handlers(emu)
    sb = "/v1/sandboxes/{id}"
    app.router.add_put(sb + "/files", h.put_file)
    app.router.add_get(sb + "/files", h.get_file)


class _Handlers:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    async def put_file(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.running(request)
        path = self._guest_path(request)
        declared = request.content_length
        if declared is not None and declared > MAX_FILE_BYTES:
            fail(
                400, f"file too large: at most {MAX_FILE_BYTES} bytes", fields={"body": "too large"}
            )
        runtime = sb.runtime
        assert runtime is not None
        parent_fd, name = self._open_parent(runtime, path)
        tmp = f".{name}.upload-{_ids.ulid()}"
        written = 0
        sb.busy += 1
        try:
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644, dir_fd=parent_fd
            )
            try:
                owner = self.emu.runtime.owner
                if owner is not None:
                    os.fchown(fd, *owner)
                async for chunk in request.content.iter_chunked(1 << 20):
                    written += len(chunk)
                    if written > MAX_FILE_BYTES:
                        fail(
                            400,
                            f"file too large: at most {MAX_FILE_BYTES} bytes",
                            fields={"body": "too large"},
                        )
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=parent_fd)
                raise
            os.close(fd)
            try:
                os.rename(tmp, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=parent_fd)
                fail(400, f"cannot write {path}: {exc.strerror}", fields={"path": "not writable"})
        finally:
            os.close(parent_fd)
            sb.busy -= 1
            self.emu.touch(sb)
        return ok({"path": path, "bytes": written})

    @staticmethod
    def _guest_path(request: web.Request) -> str:
        try:
            return validate_guest_path(request.query.get("path"))
        except ValueError as exc:
            fail(400, f"path: {exc}", fields={"path": str(exc)})

    def _open_parent(self, runtime: SandboxRuntime, path: str) -> tuple[int, str]:
        """A descriptor of the upload's parent directory inside the tree (created as needed)."""
        parent, _, name = path.rpartition("/")
        if not name:
            fail(400, "path must name a file", fields={"path": "is a directory"})
        try:
            canon = runtime.view.canonical(runtime.rootfd, parent or "/")
        except OSError as exc:
            fail(400, f"cannot resolve {parent}: {exc.strerror}", fields={"path": "unresolvable"})
        if runtime.view.is_virtual(canon):
            fail(
                400,
                f"{path} is on a kernel filesystem (/proc, /dev); use exec for it",
                fields={"path": "special filesystem"},
            )
        if runtime.view.ro_host_path(canon) is not None:
            fail(
                400,
                f"{path} is on a read-only system directory of the emulator",
                fields={"path": "read-only"},
            )
        owner = self.emu.runtime.owner
        fd = os.dup(runtime.rootfd)
        try:
            for part in [p for p in canon.split("/") if p]:
                try:
                    nxt = open_in_root(fd, part, os.O_PATH | os.O_DIRECTORY)
                except FileNotFoundError:
                    os.mkdir(part, 0o755, dir_fd=fd)
                    if owner is not None:
                        os.chown(part, *owner, dir_fd=fd, follow_symlinks=False)
                    nxt = open_in_root(fd, part, os.O_PATH | os.O_DIRECTORY)
                os.close(fd)
                fd = nxt
            rel = os.path.relpath(os.readlink(f"/proc/self/fd/{fd}"), runtime.root)
            inside = "/" if rel == "." else "/" + rel
            if runtime.view.ro_host_path(inside) is not None or runtime.view.is_virtual(inside):
                fail(
                    400,
                    f"{path} is on a read-only system directory of the emulator",
                    fields={"path": "read-only"},
                )
            # Re-open the resolved directory relative to the tree root, then use a real dirfd.
            dirfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            return dirfd, name
        except NotADirectoryError:
            fail(400, f"a parent of {path} is not a directory", fields={"path": "not a directory"})
        except OSError as exc:
            fail(
                400,
                f"cannot create parents of {path}: {exc.strerror}",
                fields={"path": "not writable"},
            )
        finally:
            os.close(fd)

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.running(request)
        path = self._guest_path(request)
        runtime = sb.runtime
        assert runtime is not None
        fd = self._open_for_read(runtime, path)
        sb.busy += 1
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                fail(400, f"{path} is a directory", fields={"path": "is a directory"})
            if not stat.S_ISREG(st.st_mode):
                fail(400, f"{path} is not a regular file", fields={"path": "not a file"})
            resp = web.StreamResponse(
                status=200, headers={"Content-Type": "application/octet-stream"}
            )
            resp.content_length = st.st_size
            await resp.prepare(request)
            writer = FrameWriter(resp, request.get(FAULT))
            try:
                sent = 0
                while sent < st.st_size:
                    chunk = os.read(fd, min(1 << 18, st.st_size - sent))
                    if not chunk:
                        break
                    sent += len(chunk)
                    await writer.frame(chunk)
                await resp.write_eof()
            except StreamEnded:
                abort_connection(request)
            return resp
        finally:
            os.close(fd)
            sb.busy -= 1
            self.emu.touch(sb)

    def _open_for_read(self, runtime: SandboxRuntime, path: str) -> int:
        """A descriptor for a download. O_NONBLOCK: opening a FIFO a sandbox made would otherwise
        block the whole emulator until some writer appeared (the caller then refuses it, since
        it is not a regular file)."""
        flags = os.O_RDONLY | os.O_NONBLOCK
        try:
            canon = runtime.view.canonical(runtime.rootfd, path)
            if runtime.view.is_virtual(canon):
                fail(
                    400,
                    f"{path} is on a kernel filesystem (/proc, /dev); use exec for it",
                    fields={"path": "special filesystem"},
                )
            host = runtime.view.ro_host_path(canon)
            if host is not None:
                st = os.stat(host)
                if not st.st_mode & stat.S_IROTH:
                    raise PermissionError(errno.EACCES, "permission denied")
                return os.open(host, flags | os.O_CLOEXEC | os.O_NOFOLLOW)
            return open_in_root(runtime.rootfd, canon, flags)
        except (FileNotFoundError, NotADirectoryError):
            fail(404, f"file {path} not found")
        except OSError as exc:
            fail(400, f"cannot read {path}: {exc.strerror}", fields={"path": "unreadable"})
