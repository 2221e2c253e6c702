"""Milvus servers for tests and benchmarks, on free local ports.

:class:`MilvusLiteServer`: `milvus-lite server`, which speaks Milvus's gRPC API over the embedded
engine, so the service and the index CLI reach it with ``milvus://127.0.0.1:PORT/COLLECTION``
exactly as they would reach a Milvus standalone or cluster server. :class:`MilvusStandaloneServer`
(support/milvus_standalone.py): the real Milvus standalone server (query nodes, load state,
segments), for what only the real one does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.milvus_standalone import MilvusStandaloneServer
from support.server import free_port

__all__ = ["MilvusLiteServer", "MilvusStandaloneServer"]


class MilvusLiteServer:
    """One `milvus-lite server` process over its own data folder; restartable on the same port."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def store(self, collection: str = "gallery") -> str:
        """The store setting (TPS_STORE, --store) of a collection on this server."""
        return f"milvus://127.0.0.1:{self.port}/{collection}"

    def start(self, timeout: float = 60.0) -> MilvusLiteServer:
        command = [str(Path(sys.executable).with_name("milvus-lite")), "server"]
        command += ["--data-dir", str(self.data_dir), "--host", "127.0.0.1"]
        command += ["--port", str(self.port)]
        log = open(self.log_path, "a")  # noqa: SIM115 - the child writes to it until stopped
        self.proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        self._wait_serving(timeout)
        return self

    def _wait_serving(self, timeout: float) -> None:
        from pymilvus import MilvusClient

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"milvus-lite server exited:\n{self.logs()}")
            try:
                client = MilvusClient(uri=f"http://127.0.0.1:{self.port}", timeout=2)
                try:
                    client.list_collections()
                    return
                finally:
                    client.close()
            except Exception as err:  # not listening yet
                last = err
                time.sleep(0.2)
        raise RuntimeError(f"milvus-lite server not serving after {timeout:.0f} s: {last}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]
