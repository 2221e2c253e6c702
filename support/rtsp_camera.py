"""A camera on 127.0.0.1 for the tests: a small RTSP server that plays a recording as a live
H.264 stream, paced in real time, as an IP camera does.

No RTSP server can be installed from the package registry, so this speaks just enough of RTSP
1.0 (RFC 2326: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN) with RTP over the RTSP
connection (interleaved, as clients ask with ``rtsp_transport=tcp``) and H.264 packetised as
RFC 6184 says (single NAL units, FU-A fragments). FFmpeg's own RTSP client reads it.

It plays the recording once per connection, for ``plays`` connections, and then refuses more,
as a camera that was switched off. With ``drop_after`` it cuts its first connection after that
many frames, as a camera that reboots: the stream breaks off mid-recording, and the next
connection plays the recording from its first frame. ``speed`` sends frames faster than real
time, for tests that do not compare the stream's times with the clock.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import re
import socket
import struct
import threading
import time
from fractions import Fraction
from pathlib import Path

import av

PAYLOAD_TYPE = 96
MAX_PAYLOAD = 1400


def _nal_units(annexb: bytes) -> list[bytes]:
    return [n for n in re.split(b"\x00\x00\x01", annexb) if n.strip(b"\x00")]


@functools.cache  # cameras of one recording send the same units: encoded once per run
def _encode(recording: Path) -> tuple[list[list[bytes]], float, tuple[int, int]]:
    """The recording as H.264 access units (lists of NAL units) with SPS/PPS before every key
    frame, one key frame a second; (units, frames/s, (width, height))."""
    with av.open(str(recording)) as src:
        stream = src.streams.video[0]
        fps = float(stream.average_rate or 8)
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(stream)]
    height, width = frames[0].shape[:2]
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = Fraction(1, round(fps))
    codec.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "x264-params": f"keyint={round(fps)}:repeat-headers=1",
    }
    units: list[list[bytes]] = []
    for n, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = n
        units += [_nal_units(bytes(p)) for p in codec.encode(frame)]
    units += [_nal_units(bytes(p)) for p in codec.encode(None)]
    return units, fps, (width, height)


class RtspCamera:
    def __init__(
        self, recording: Path, plays: int = 1, drop_after: int | None = None, speed: float = 1.0
    ):
        self.units, self.fps, self.size = _encode(recording)
        self.plays = plays
        self.speed = speed  # 2.0: frames go out twice as fast as they were taken
        self.drop_after = drop_after
        self.connections = 0
        self.frames_sent = 0  # over every connection
        self._stop = threading.Event()
        self._clients: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"rtsp://127.0.0.1:{self.port}/lobby"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> RtspCamera:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for conn in self._clients:
            # Already closed by its client or by the end of the recording, most often.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            self._clients.append(conn)
            self._start(self._serve, conn, self.connections)
            if self.connections == self.plays:
                self._listener.close()  # switched off: further connections are refused
                return

    def _start(self, target, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _sdp(self) -> str:
        key = next(u for u in self.units if any(n[0] & 0x1F == 7 for n in u))
        sps = next(n for n in key if n[0] & 0x1F == 7)
        pps = next(n for n in key if n[0] & 0x1F == 8)
        sets = ",".join(base64.b64encode(n).decode() for n in (sps, pps))
        return (
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=camera\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
            f"m=video 0 RTP/AVP {PAYLOAD_TYPE}\r\na=rtpmap:{PAYLOAD_TYPE} H264/90000\r\n"
            f"a=fmtp:{PAYLOAD_TYPE} packetization-mode=1;sprop-parameter-sets={sets}\r\n"
            "a=control:track1\r\n"
        )

    def _serve(self, conn: socket.socket, number: int) -> None:
        lock = threading.Lock()
        playing = threading.Event()
        reader = conn.makefile("rb")
        try:
            while not self._stop.is_set():
                first = reader.read(1)
                if not first:
                    return
                if first == b"$":  # an interleaved RTCP report from the client
                    _, size = struct.unpack(">BH", reader.read(3))
                    reader.read(size)
                    continue
                lines = [first + reader.readline()]
                while lines[-1] not in (b"\r\n", b"\n", b""):
                    lines.append(reader.readline())
                method = lines[0].split()[0].decode()
                headers = dict(
                    line.decode().strip().split(":", 1) for line in lines[1:-1] if b":" in line
                )
                headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
                extra, body = self._answer(method, headers)
                reply = f"RTSP/1.0 200 OK\r\nCSeq: {headers.get('cseq', '0')}\r\n{extra}"
                reply += f"Content-Length: {len(body)}\r\n\r\n{body}"
                with lock:
                    conn.sendall(reply.encode())
                if method == "PLAY" and not playing.is_set():
                    playing.set()
                    drop = self.drop_after if number == 1 else None
                    self._start(self._play, conn, lock, drop)
                if method == "TEARDOWN":
                    return
        except (OSError, struct.error, ValueError, IndexError):
            return  # the client went away mid-request
        finally:
            reader.close()
            conn.close()

    def _answer(self, method: str, headers: dict[str, str]) -> tuple[str, str]:
        if method == "OPTIONS":
            return "Public: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN\r\n", ""
        if method == "DESCRIBE":
            return f"Content-Base: {self.url}/\r\nContent-Type: application/sdp\r\n", self._sdp()
        if method == "SETUP":
            transport = "RTP/AVP/TCP;unicast;interleaved=0-1"
            return f"Transport: {transport}\r\nSession: 1234;timeout=60\r\n", ""
        return "Session: 1234\r\n", ""

    def _play(self, conn: socket.socket, lock: threading.Lock, drop: int | None) -> None:
        seq, clock = 0, 0
        began = time.monotonic()
        try:
            for sent, unit in enumerate(self.units):
                if self._stop.is_set() or sent == drop:
                    break
                packets = self._packets(unit, seq, clock)
                seq = (seq + len(packets)) & 0xFFFF
                with lock:
                    for packet in packets:
                        conn.sendall(b"$\x00" + struct.pack(">H", len(packet)) + packet)
                self.frames_sent += 1
                clock += round(90000 / self.fps)
                due = began + (sent + 1) / (self.fps * self.speed)
                time.sleep(max(0.0, due - time.monotonic()))
            conn.shutdown(socket.SHUT_RDWR)  # the end of the recording, or a reboot
        except OSError:
            return

    @staticmethod
    def _packets(unit: list[bytes], seq: int, clock: int) -> list[bytes]:
        payloads: list[bytes] = []
        for nal in unit:
            if len(nal) <= MAX_PAYLOAD:
                payloads.append(nal)
                continue
            indicator, kind = (nal[0] & 0xE0) | 28, nal[0] & 0x1F
            body = nal[1:]
            for begin in range(0, len(body), MAX_PAYLOAD):
                start = 0x80 if begin == 0 else 0
                end = 0x40 if begin + MAX_PAYLOAD >= len(body) else 0
                payloads.append(
                    bytes([indicator, start | end | kind]) + body[begin : begin + MAX_PAYLOAD]
                )
        packets = []
        for n, payload in enumerate(payloads):
            marker = 0x80 if n == len(payloads) - 1 else 0
            header = struct.pack(
                ">BBHII", 0x80, marker | PAYLOAD_TYPE, (seq + n) & 0xFFFF, clock & 0xFFFFFFFF, 7
            )
            packets.append(header + payload)
        return packets
