"""Running `python -m service` as a real process for the API tests and the benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
API_KEY = "api-test-key-7f3a"
UPLOAD_LIMIT = 2 * 1024 * 1024  # small, so the size tests send little


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """One `python -m service` process; restartable on the same port and folders."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        log = open(self.log_path, "a")  # noqa: SIM115 - the child writes to it until stopped
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 90.0) -> ServiceProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the service exited ({self.proc.returncode}):\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the service was not ready after {timeout:.0f} s:\n{self.logs()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code, self.proc = self.proc.returncode, None
        return code

    def kill(self) -> int | None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.proc is None:
            return None
        self.proc.kill()
        code, self.proc = self.proc.wait(), None
        return code

    def restart(self) -> ServiceProcess:
        self.stop()
        return self.start().wait_ready()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def service_env(bundle: Path, index_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        "TPS_BUNDLE": str(bundle),
        "TPS_INDEX_DIR": str(index_dir),
        "TPS_API_KEY": API_KEY,  # an admin key
        # Reads without a key on 127.0.0.1, as the demo serves them; the access-control tests
        # pass TPS_OPEN_READS=false with a keys file.
        "TPS_OPEN_READS": "true",
        "TPS_DEVICE": "cpu",
        "TPS_INDEX_GPU": "never",
        "TPS_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        "TPS_LOG_LEVEL": "info",
    }
    env.update(extra)
    return env


def store_env(bundle: Path, store: str, image_dir: Path, **extra: str) -> dict[str, str]:
    """service_env for a store named by TPS_STORE (a Milvus server, a milvus-lite file)."""
    env = service_env(bundle, Path(), TPS_STORE=store, TPS_IMAGE_DIR=str(image_dir), **extra)
    del env["TPS_INDEX_DIR"]
    return env


def index_count(http: httpx.Client) -> int:
    return http.get("/v1/info").json()["index"]["count"]
