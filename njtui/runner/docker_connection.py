"""A client's connection to the agent in a container: the engine's attach stream for live
messages and requests, the journal read out of the container for what came before."""

from __future__ import annotations

import io
import socket
import ssl
import struct
import tarfile
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from njtui.runner import protocol
from njtui.runner.backend import BackendError
from njtui.runner.docker_container import JOURNAL

if TYPE_CHECKING:
    from njtui.runner.docker_backend import DockerBackend


def container_file(container, path: str) -> bytes | None:
    """A file of a container (running, stopped, or created and never started), read through
    the API; None if it is not there."""
    import docker

    try:
        chunks, _ = container.get_archive(path)
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r") as tar:
        member = tar.next()
        handle = tar.extractfile(member) if member is not None else None
        return handle.read() if handle is not None else None


def journal_lines(container) -> Iterator[bytes]:
    """The agent's journal, read out of the container (running or stopped) through the API."""
    data = container_file(container, JOURNAL)
    if data is None:
        return
    for line in io.BytesIO(data):
        if line.endswith(b"\n"):
            yield line


def _tls_frames(sock: ssl.SSLSocket) -> Iterator[tuple[int, bytes]]:
    """(stream, data) of each frame of a multiplexed attach stream, read with plain blocking
    reads: 8 bytes of header (stream, 3 zero bytes, big-endian length), then the data."""

    def exactly(size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    while True:
        header = exactly(8)
        if header is None:
            return
        stream, length = header[0], struct.unpack(">L", header[4:])[0]
        data = exactly(length) if length else b""
        if data is None:
            return
        yield stream, data


class AttachStream:
    """The container's stdio through the engine's attach API, as protocol messages. Opened
    before the container starts, it sees every message from `hello` on."""

    def __init__(self, client, container_id: str) -> None:
        from docker.utils.socket import frames_iter

        self.socket = client.api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        self.raw = getattr(self.socket, "_sock", self.socket)
        # The SDK's reader polls the socket before each read, which waits forever on a TLS
        # socket (a tcp:// engine) whose next frame was already decrypted into its buffer.
        self._frames = _tls_frames(self.raw) if isinstance(self.raw, ssl.SSLSocket) else frames_iter(self.socket, False)
        self._pending = b""

    def messages(self) -> Iterator[dict[str, Any]]:
        for stream, data in self._frames:
            if stream == 2:
                yield {"type": protocol.AGENT_STDERR, "text": data.decode("utf-8", "replace")}
                continue
            self._pending += data
            *lines, self._pending = self._pending.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                try:
                    yield protocol.decode(line)
                except ValueError:
                    yield {"type": protocol.AGENT_STDERR, "text": line.decode("utf-8", "replace")}


class DockerConnection:
    """One client's view of a container's agent: journal replay, then the live attach stream."""

    def __init__(self, backend: DockerBackend, container, stream: AttachStream | None = None, seen: list[dict[str, Any]] | None = None) -> None:
        self.backend = backend
        self.container = container
        # Attached before the journal is read: what happens in between arrives on both, and the
        # sequence numbers drop the duplicates. A stream handed over from start() has seen
        # everything from the first message on (`seen`), so it needs no journal at all.
        self.stream = stream or AttachStream(backend.client, container.id)
        self._seen_from_start = seen
        self._raw = self.stream.raw
        self._send_lock = threading.Lock()
        self._replay_from: int | None = None
        self._closed = False
        # Why the container's agent ended, when another backend knows better than its engine
        # (a Swarm that drained the node).
        self.explain: Callable[[str], str] = backend.exit_reason

    def send(self, request: dict[str, Any]) -> None:
        if request.get("op") == "attach":
            # Answered here, as the host relay answers it: the journal is in the container.
            self._replay_from = int(request.get("since") or 1)
            return
        data = protocol.encode(request)
        with self._send_lock:
            try:
                self._raw.sendall(data)
            except OSError as exc:
                raise BackendError(f"runtime container {self.container.short_id} is not reachable: {exc}") from None

    def _replay(self) -> Iterator[dict[str, Any]]:
        since, self._replay_from = self._replay_from, None
        if since is None:
            return
        if self._seen_from_start is not None:
            lines = self._seen_from_start
            self._seen_from_start = None
            yield from (message for message in lines if since <= (message.get("seq") or 0))
            return
        for line in journal_lines(self.container):
            message = protocol.decode(line)
            if since <= (message.get("seq") or 0):
                yield message

    def __iter__(self) -> Iterator[dict[str, Any]]:
        last = 0
        try:
            for message in self._replay():
                last = max(last, message.get("seq") or 0)
                yield message
            for message in self.stream.messages():
                seq = message.get("seq") or 0
                if seq and seq <= last:
                    continue
                last = max(last, seq)
                yield message
                if self._replay_from is not None:
                    # A client taking over the recording asked for history again.
                    yield from self._replay()
        except Exception:  # noqa: BLE001 - the stream ended: the engine, the container or the network went
            pass
        if not self._closed:
            yield {"type": protocol.RUNTIME_EXIT, "reason": self.explain(self.container.id)}

    def close(self) -> None:
        self._closed = True
        try:
            # Only our side stops reading: a half-close would close the agent's stdin.
            self._raw.shutdown(socket.SHUT_RD)
        except OSError:
            pass
        try:
            self.stream.socket.close()
        except OSError:
            pass
