"""HTTP/1.1 over a plain socket, for requests a client library would refuse or tidy up: dot
segments kept in paths, a Content-Length the body never reaches, chunks sent slowly."""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes


def connect(url: str, timeout: float = 10.0) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1", "raw requests go to the local test server only"
    return socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)


def head_bytes(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_reply(sock: socket.socket) -> RawReply:
    """One response; the body by Content-Length, or up to the close."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response head: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers.get("content-length", -1))
    while length < 0 or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return RawReply(int(status_line.split()[1]), headers, body)


def request(url: str, method: str, path: str, headers: dict[str, str] | None = None) -> RawReply:
    with connect(url) as sock:
        sock.sendall(head_bytes(method, path, {"Connection": "close", **(headers or {})}))
        return read_reply(sock)


def answered(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def stream_until_answered(
    sock: socket.socket, chunk: bytes, max_bytes: int, pause_s: float = 0.005
) -> int:
    """Send chunked-encoding chunks until the server answers; return the body bytes sent."""
    sent = 0
    while sent < max_bytes and not answered(sock):
        try:
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            break  # the server closed on us: its answer is waiting
        sent += len(chunk)
        time.sleep(pause_s)
    return sent
