"""File transfer for one sandbox: streaming upload and download, whole directories via tar.

Reached as ``sandbox.files``. Nothing here loads a big file into memory: uploads from a path or a
file object are read in 1 MiB blocks in a worker thread and streamed as the request body;
downloads are read from the socket chunk by chunk. ``download_to`` writes through a temporary file
in the destination directory and renames it into place, so the destination is either the complete
new file or untouched, never a partial one (also when the task is cancelled).

Wire (WIRE §12): ``PUT /v1/sandboxes/{id}/files?path=/abs`` with the raw bytes, and ``GET`` on the
same URL for the bytes back. Paths must be absolute without ``..``; bodies are at most 500 MiB.
"""

from __future__ import annotations

import io
import itertools
import os
import secrets
import stat
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import IO, TYPE_CHECKING, Any, BinaryIO

import anyio
import anyio.to_thread

from ._download import DownloadStream
from ._resource import Resource
from ._tar import safe_extract, tar_directory
from ._validate import check_int, check_remote_path, check_timeout

if TYPE_CHECKING:
    from .sandbox import Sandbox

__all__ = ["MAX_FILE_SIZE", "DownloadStream", "Files", "UploadData"]

#: The server's per-file limit: 500 MiB (WIRE §12, §20.13).
MAX_FILE_SIZE = 524_288_000

#: Blocks read from local files per worker-thread hop: 1 MiB measured ~0.35 ms CPU/MiB against
#: ~0.55 for 256 KiB (aiohttp's own file payload) at the same MB/s; memory stays flat.
_READ_BLOCK = 1 << 20
#: A ``download_to`` write on the event loop that slept this long (seconds) moves the rest of that
#: download to a worker thread: the disk is throttled, remote or failing, and the loop must not
#: wait on it again. A write into the page cache takes tens of microseconds per network chunk.
_SLOW_WRITE = 0.002
#: Bytes gathered before one worker-thread write once a download has moved to the thread.
_WRITE_BATCH = 256 * 1024
#: Default per-attempt deadline of an upload whose length is unknown (an async iterable).
_UNKNOWN_SIZE_TIMEOUT = 3600.0
#: Default ``download_iter`` chunk size.
DEFAULT_CHUNK_SIZE = 256 * 1024

#: What ``upload`` accepts: bytes, a local file path, a binary file object, or an async iterable.
UploadData = (
    bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO | AsyncIterable[bytes]
)

_OCTET = {"Content-Type": "application/octet-stream"}


def _check_size(size: int, argument: str) -> None:
    """Refuse a body the server would reject, without sending a byte of it."""
    if size > MAX_FILE_SIZE:
        raise ValueError(
            f"{argument} is {size} bytes, over the 500 MiB ({MAX_FILE_SIZE} bytes) upload limit"
        )


def _remaining_size(fileobj: IO[bytes]) -> int | None:
    """Bytes left in a file object from its current position, or None if it cannot tell."""
    try:
        pos = fileobj.tell()
        try:
            st = os.fstat(fileobj.fileno())
        except (OSError, AttributeError, io.UnsupportedOperation):
            end = fileobj.seek(0, os.SEEK_END)
            fileobj.seek(pos)
            return max(0, end - pos)
        if not stat.S_ISREG(st.st_mode):
            return None
        return max(0, st.st_size - pos)
    except (OSError, AttributeError, io.UnsupportedOperation, ValueError):
        return None


async def _read_blocks(fileobj: IO[bytes], size: int | None) -> AsyncIterator[bytes]:
    """Yield a file object's bytes in blocks read by a worker thread (the loop never blocks).

    With a known ``size`` exactly that many bytes are sent, matching the Content-Length; a file
    that shrank meanwhile is an error rather than a silently short upload.
    """
    remaining = size
    while remaining is None or remaining > 0:
        want = _READ_BLOCK if remaining is None else min(_READ_BLOCK, remaining)
        block = await anyio.to_thread.run_sync(fileobj.read, want)
        if not block:
            if remaining:
                raise OSError(f"file shrank during upload: {remaining} bytes missing")
            return
        if not isinstance(block, (bytes, bytearray, memoryview)):
            raise TypeError("data must be opened in binary mode ('rb'), got text from read()")
        if remaining is not None:
            remaining -= len(block)
        yield bytes(block) if not isinstance(block, bytes) else block


async def _checked_iterable(source: AsyncIterable[Any]) -> AsyncIterator[bytes]:
    """Pass an async iterable through, refusing non-bytes chunks with a clear message."""
    async for chunk in source:
        if isinstance(chunk, bytes):
            yield chunk
        elif isinstance(chunk, (bytearray, memoryview)):
            yield bytes(chunk)
        else:
            raise TypeError(f"data must yield bytes chunks, got {type(chunk).__name__}")


class Files(Resource):
    """Upload and download files in one sandbox: ``sandbox.files``.

    Guest paths are absolute and must not contain ``..`` (``ValueError`` otherwise, before
    anything is sent). One file is at most 500 MiB (``MAX_FILE_SIZE``).

    Example:
        ```python
        await sb.files.upload("/workspace/main.py", b"print('hi')")
        data = await sb.files.download("/workspace/main.py")
        await sb.files.download_to("/workspace/main.py", "main.py")
        ```
    """

    __slots__ = ("_sandbox",)

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(sandbox._transport, sandbox._path("/files"))
        self._sandbox = sandbox

    def __repr__(self) -> str:
        return f"Files(sandbox={self._sandbox.id!r})"

    # -- upload ---------------------------------------------------------------------------------

    async def upload(self, path: str, data: UploadData, *, timeout: float | None = None) -> None:
        """Write ``data`` to the guest file ``path`` (parents are created; existing files replaced).

        ``data`` may be bytes, a local file path (``str`` or ``os.PathLike``: a ``str`` is always
        a path, encode text yourself), a binary file object (read from its current position), or
        an async iterable of bytes. Files are streamed, never loaded whole. Only a bytes body can
        be resent, so only a bytes upload is retried after a transient failure. ``timeout``
        bounds the whole upload in seconds (inf: no bound); by default it is the session's
        request timeout plus one second per MiB (an hour at least when the length is unknown),
        and once the last byte is sent the answer must come within the request timeout.

        Args:
            path: The guest file, an absolute path without ``..``.
            data: bytes, a local path, a binary file object, or an async iterable of bytes.
            timeout: Seconds for the whole upload (``math.inf``: no bound).

        Raises:
            TypeError: ``data`` is of none of those types (or a text-mode file).
            ValueError: ``path`` is not absolute or holds ``..``, or ``data`` is over 500 MiB.
            FileNotFoundError: ``data`` names a local file that does not exist.
            APITimeoutError: ``timeout`` expired.
            APIError: The server refused the upload (``NotFoundError``: the sandbox is gone).
            APIConnectionError: The connection failed (a non-bytes upload is not resent).
        """
        remote = check_remote_path(path, "path")
        check_timeout("timeout", timeout)
        if isinstance(data, (bytes, bytearray, memoryview)):
            body = data if isinstance(data, bytes) else bytes(data)
            _check_size(len(body), "data")
            await self._put(remote, body, len(body), timeout=timeout)
            return
        if isinstance(data, (str, os.PathLike)):
            await self._upload_path(remote, data, timeout=timeout)
            return
        if isinstance(data, AsyncIterable):
            await self._put(remote, _checked_iterable(data), None, timeout=timeout)
            return
        if hasattr(data, "read"):
            if isinstance(data, io.TextIOBase):
                raise TypeError("data is a text-mode file; open it in binary mode ('rb')")
            fileobj: IO[bytes] = data
            size = _remaining_size(fileobj)
            if size is not None:
                _check_size(size, "data")
            await self._put(remote, _read_blocks(fileobj, size), size, timeout=timeout)
            return
        raise TypeError(
            "data must be bytes, a file path, a binary file object or an async iterable of bytes, "
            f"got {type(data).__name__}"
        )

    async def _upload_path(
        self, remote: str, local: str | os.PathLike[str], *, timeout: float | None
    ) -> None:
        """Stream a local file; its size is checked against the limit before connecting."""
        local_path = os.fspath(local)
        try:
            fileobj = await anyio.to_thread.run_sync(open, local_path, "rb")
        except FileNotFoundError:
            hint = (
                " (a str is treated as a local file path; pass bytes, e.g. text.encode(), to "
                "upload content)"
                if isinstance(local, str)
                else ""
            )
            raise FileNotFoundError(f"data: no such local file: {local_path!r}{hint}") from None
        try:
            size = _remaining_size(fileobj)
            if size is not None:
                _check_size(size, "data")
            await self._put(remote, _read_blocks(fileobj, size), size, timeout=timeout)
        finally:
            fileobj.close()

    async def _put(
        self,
        remote: str,
        body: bytes | AsyncIterable[bytes],
        size: int | None,
        *,
        timeout: float | None,
    ) -> None:
        """One logical PUT. The transport resends only a bytes body (the one kind it can replay);
        a streamed body of known size goes out with a Content-Length (no chunked encoding).
        """
        headers = _OCTET
        if size is not None and not isinstance(body, bytes):
            headers = {**_OCTET, "Content-Length": str(size)}
        transport = self._sandbox._transport
        timeout = check_timeout("timeout", timeout)
        await transport.request(
            "PUT",
            self._sandbox._path("/files"),
            params={"path": remote},
            data=body,
            headers=headers,
            timeout=timeout,
            send_timeout=self._default_timeout(size) if timeout is None else None,
        )

    def _default_timeout(self, size: int | None) -> float | None:
        """The session's request timeout, stretched for big bodies (one attempt covers the upload).

        A transfer gets one extra second per MiB (i.e. it may run as slowly as 1 MiB/s); a body of
        unknown length gets at least an hour to be sent. Once a streamed body's last byte is out,
        the transport bounds the wait for the answer by the request timeout again.
        ``timeout=`` overrides all of this.
        """
        base = self._sandbox._transport.timeouts.request
        if base is None:
            return None
        if size is None:
            return max(base, _UNKNOWN_SIZE_TIMEOUT)
        return base + size / (1 << 20)

    # -- download -------------------------------------------------------------------------------

    def download_iter(
        self, path: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE, timeout: float | None = None
    ) -> DownloadStream:
        """Stream a guest file as chunks of at most ``chunk_size`` bytes.

        Use it as ``async with sb.files.download_iter(p) as chunks: async for c in chunks: ...``
        so an early exit closes the connection at once. ``timeout`` bounds connecting and the
        response headers; after that the session's stream idle timeout applies per chunk
        (``StreamStalledError``), never a total deadline: the caller consumes the stream at its
        own pace, so the caller bounds it (``anyio.fail_after`` around the loop).

        Args:
            path: The guest file, an absolute path without ``..``.
            chunk_size: The largest chunk yielded, in bytes.
            timeout: Seconds for connecting and the response headers.

        Returns:
            A ``DownloadStream``; nothing is sent until it is iterated.

        Raises:
            ValueError: ``path`` is not absolute or holds ``..``; a bad ``chunk_size``.

        Example:
            ```python
            async with sb.files.download_iter("/var/log/big.log") as chunks:
                async for chunk in chunks:
                    sink.write(chunk)
            ```
        """
        remote = check_remote_path(path, "path")
        return DownloadStream(
            self._sandbox, remote, check_int("chunk_size", chunk_size, 1), timeout
        )

    async def download(self, path: str, *, timeout: float | None = None) -> bytes:
        """Read a whole guest file into memory; for big files prefer ``download_to``.

        ``timeout`` bounds the whole download, body included (:class:`APITimeoutError`; inf: no
        bound). Without it, connecting and the headers get the session's request timeout and
        the body the stream idle timeout, with no total bound (big files are fine).

        Args:
            path: The guest file, an absolute path without ``..``.
            timeout: Seconds for the whole download (``math.inf``: no bound).

        Returns:
            The file's bytes.

        Raises:
            ValueError: ``path`` is not absolute or holds ``..``.
            NotFoundError: No such file in the guest (or the sandbox is gone).
            APITimeoutError: ``timeout`` expired.
            StreamStalledError: The body stopped arriving for the idle timeout.
            StreamInterruptedError: The connection ended before the whole file arrived.
        """
        remote = check_remote_path(path, "path")
        timeout = check_timeout("timeout", timeout)
        return await DownloadStream(self._sandbox, remote, None, timeout, whole=True).read_all()

    async def download_to(
        self, path: str, local_path: str | os.PathLike[str], *, timeout: float | None = None
    ) -> int:
        """Stream a guest file to ``local_path`` atomically; returns the number of bytes written.

        Bytes go to a hidden temporary file next to ``local_path`` that is renamed over it only
        after the last byte arrived. On any error or cancellation the temporary file is removed
        and ``local_path`` is left as it was. ``timeout`` bounds the whole download as for
        :meth:`download`.

        Args:
            path: The guest file, an absolute path without ``..``.
            local_path: Where to write it; an existing file is replaced.
            timeout: Seconds for the whole download (``math.inf``: no bound).

        Returns:
            The number of bytes written.

        Raises:
            ValueError: ``path`` is not absolute or holds ``..``.
            IsADirectoryError: ``local_path`` is a directory.
            NotFoundError: No such file in the guest.
            APITimeoutError: ``timeout`` expired.
            StreamError: The body stalled or was cut.
        """
        remote = check_remote_path(path, "path")
        timeout = check_timeout("timeout", timeout)
        target, tmp, fd = _create_temp_beside(local_path)
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:  # closed at once on any error
                sink = _FileSink(out)
                stream = DownloadStream(self._sandbox, remote, None, timeout, whole=True)
                written = await stream.copy_into(sink.write, sink.write_async)
                await sink.finish()
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return written

    # -- directories ----------------------------------------------------------------------------

    async def upload_dir(
        self,
        local_dir: str | os.PathLike[str],
        remote_dir: str,
        *,
        timeout: float | None = None,
    ) -> None:
        """Copy a local directory tree into ``remote_dir`` (created if missing).

        The tree is tarred locally into a temporary file (in a worker thread), uploaded, then
        unpacked in the guest with ``tar -xf`` and the archive removed. Files are stored owned by
        root with their permission bits; symlinks stay symlinks. Needs ``tar`` in the guest.

        Args:
            local_dir: The local directory to copy.
            remote_dir: The guest directory to copy it into, an absolute path without ``..``.
            timeout: Seconds for the upload, and again for unpacking in the guest.

        Raises:
            NotADirectoryError: ``local_dir`` is not a directory.
            ValueError: A bad ``remote_dir``, or the archive is over 500 MiB.
            CommandError: Unpacking in the guest failed (no ``tar``, no space, ...).
            APIError: A request failed.
        """
        remote = check_remote_path(remote_dir, "remote_dir")
        source = _existing_dir(local_dir)
        archive = await anyio.to_thread.run_sync(tar_directory, source)
        try:
            size = _remaining_size(archive)
            if size is not None and size > MAX_FILE_SIZE:
                raise ValueError(
                    f"local_dir packs into a {size}-byte tar, over the 500 MiB "
                    f"({MAX_FILE_SIZE} bytes) upload limit"
                )
            guest_tar = f"/tmp/.createos-upload-{secrets.token_hex(8)}.tar"
            await self._put(guest_tar, _read_blocks(archive, size), size, timeout=timeout)
        finally:
            archive.close()
        script = 'mkdir -p -- "$1" && tar -xf "$2" -C "$1"; rc=$?; rm -f -- "$2"; exit $rc'
        await self._sandbox.exec(
            "sh", ["-c", script, "sh", remote, guest_tar], timeout=timeout, check=True
        )

    async def download_dir(
        self,
        remote_dir: str,
        local_dir: str | os.PathLike[str],
        *,
        timeout: float | None = None,
    ) -> None:
        """Copy the guest directory ``remote_dir`` into ``local_dir`` (created if missing).

        The guest tars the tree to a temporary file, which is downloaded and unpacked locally.
        Unpacking refuses any member that would land outside ``local_dir`` (absolute names,
        ``..``, links pointing out directly or through a chain of the archive's links, device
        files) with ``ValueError`` before writing anything.

        Args:
            remote_dir: The guest directory to copy, an absolute path without ``..``.
            local_dir: The local directory to copy it into.
            timeout: Seconds for packing in the guest, and again for the download.

        Raises:
            ValueError: A bad ``remote_dir``, or an archive member that would land outside
                ``local_dir``.
            NotADirectoryError: ``local_dir`` exists and is not a directory.
            CommandError: Packing in the guest failed (no such directory, no ``tar``, ...).
            APIError: A request failed.
        """
        remote = check_remote_path(remote_dir, "remote_dir")
        target = _dir_target(local_dir)
        guest_tar = f"/tmp/.createos-download-{secrets.token_hex(8)}.tar"
        script = 'tar -cf "$2" -C "$1" . || { rc=$?; rm -f -- "$2"; exit $rc; }'
        await self._sandbox.exec(
            "sh", ["-c", script, "sh", remote, guest_tar], timeout=timeout, check=True
        )
        fd, local_tar = tempfile.mkstemp(prefix=".createos-download-", suffix=".tar")
        os.close(fd)
        try:
            try:
                await self.download_to(guest_tar, local_tar, timeout=timeout)
            finally:
                await self._remove_guest_file(guest_tar)
            await anyio.to_thread.run_sync(safe_extract, local_tar, target)
        finally:
            try:
                os.unlink(local_tar)
            except FileNotFoundError:
                pass

    async def _remove_guest_file(self, guest_path: str) -> None:
        """Best-effort cleanup of a guest temp file; never masks the error that got us here."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            try:
                await self._sandbox.exec("rm", ["-f", "--", guest_path], timeout=10)
            except Exception:  # the transfer's own outcome matters more than the cleanup
                pass


class _FileSink:
    """Where ``download_to`` puts a download: written on the event loop while writes are quick.

    A write into the page cache costs less than a hop to a worker thread, so each chunk is
    written as it arrives (no batch held in memory, no thread hop), the way a hand-written
    client does. Each such write is timed; the first one that took ``_SLOW_WRITE`` or longer and
    slept in the kernel (a throttled, remote or failing disk; on Linux a voluntary context
    switch of this thread, so a busy CPU preempting us does not count) moves the rest of the
    download, and the final close, to a worker thread in ``_WRITE_BATCH`` batches. So the loop
    waits on at most one slow write per download.
    """

    __slots__ = ("_file", "_pending", "_pending_size", "threaded")

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._pending: list[bytes] = []
        self._pending_size = 0
        #: True once a slow write moved the rest of the download to a worker thread.
        self.threaded = False

    def write(self, chunk: bytes) -> bool:
        """Write ``chunk`` now; True when that was slow and the rest must go to the thread."""
        sleeps = _voluntary_switches()
        start = time.perf_counter()
        _write_all(self._file, chunk)
        if time.perf_counter() - start < _SLOW_WRITE or _voluntary_switches() == sleeps:
            return False  # quick, or only preempted by another process (no wait on the disk)
        self.threaded = True
        return True

    async def write_async(self, chunk: bytes) -> None:
        """Gather ``chunk``; write a full batch in a worker thread (waited for, also on cancel)."""
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        if self._pending_size >= _WRITE_BATCH:
            await self._flush()

    async def _flush(self) -> None:
        batch, self._pending, self._pending_size = self._pending, [], 0
        await anyio.to_thread.run_sync(_write_batch, self._file, batch)

    async def finish(self) -> None:
        """Write what is gathered and close the file (in the thread once writes were slow)."""
        if self._pending:
            await self._flush()
        if self.threaded:
            await anyio.to_thread.run_sync(self._file.close)
        else:
            self._file.close()


def _rusage_sleeps() -> int:
    """How often this thread has slept in the kernel so far (Linux: voluntary switches)."""
    return resource.getrusage(_RUSAGE_THREAD).ru_nvcsw


try:
    import resource

    _RUSAGE_THREAD: int = resource.RUSAGE_THREAD  # type: ignore[attr-defined, unused-ignore]
    _voluntary_switches: Callable[[], int] = _rusage_sleeps
except (ImportError, AttributeError):  # not Linux: every slow write counts as a wait on the disk
    _voluntary_switches = itertools.count().__next__


def _write_all(file: IO[bytes], data: bytes | memoryview) -> None:
    """Write all of ``data`` to an unbuffered file (``write`` may stop short)."""
    done = file.write(data)
    size = len(data)
    if done == size:
        return
    view = memoryview(data)
    while done < size:
        n = file.write(view[done:])
        if not n:
            raise OSError(f"wrote {done} of {size} bytes of a chunk; the file takes no more")
        done += n


def _write_batch(file: IO[bytes], batch: list[bytes]) -> None:
    """A worker thread's part of ``download_to``: write the gathered chunks in order."""
    for chunk in batch:
        _write_all(file, chunk)


# Local filesystem checks: a stat or two, done before any request so bad arguments fail first.


def _create_temp_beside(local_path: str | os.PathLike[str]) -> tuple[str, str, int]:
    """(target, temp path, open fd) for an atomic write of ``local_path``.

    The temp file is created with mode 0o666 so the umask decides the final permissions, as for
    any newly created file (``mkstemp`` would force 0o600).
    """
    target = os.path.abspath(os.fspath(local_path))
    if os.path.isdir(target):
        raise IsADirectoryError(f"local_path is a directory: {target!r}")
    directory, name = os.path.split(target)
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.part")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    return target, tmp, os.open(tmp, flags, 0o666)


def _existing_dir(local_dir: str | os.PathLike[str]) -> str:
    source = os.fspath(local_dir)
    if not os.path.isdir(source):
        raise NotADirectoryError(f"local_dir is not a directory: {source!r}")
    return source


def _dir_target(local_dir: str | os.PathLike[str]) -> str:
    target = os.path.abspath(os.fspath(local_dir))
    if os.path.exists(target) and not os.path.isdir(target):
        raise NotADirectoryError(f"local_dir exists and is not a directory: {target!r}")
    return target
