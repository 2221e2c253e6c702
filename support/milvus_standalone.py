"""The real Milvus standalone server (the ``milvus`` 2.3.5 package's embedded binary) for tests
and benchmarks: every port a free 127.0.0.1 port, its own data folder, and a process that can
be stopped, SIGKILLed and restarted on the same ports and data.

Why not the package's ``milvus-server`` command: it is a Python wrapper that starts the server
binary as a child and probes port 9091 upward for the metrics port; a SIGKILL of the wrapper
leaves the server running. Here the binary runs directly, in a session of its own, and the
package only writes its configuration (``MilvusServerConfig``) and unpacks the binary.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from support.server import free_port

SESSION_TTL_S = 10
PORT_ATTEMPTS = 5
PR_SET_PDEATHSIG = 1  # linux/prctl.h

# The package's name for each port in its configuration template.
PORT_KEYS = (
    "proxy_port",
    "etcd_port",
    "root_coord_port",
    "proxy_internal_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
)


class MilvusStandaloneServer:
    """One Milvus standalone server over ``data_dir``; restartable on the same ports."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.log_path = log_path
        self.ports = {key: free_port() for key in PORT_KEYS}
        self.metrics_port = free_port()
        self.etcd_peer_port = free_port()
        self.port = self.ports["proxy_port"]
        self.proc: subprocess.Popen | None = None
        self._configured = False

    def store(self, collection: str = "gallery") -> str:
        """The store setting (TPS_STORE, --store) of a collection on this server."""
        return f"milvus://127.0.0.1:{self.port}/{collection}"

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _configure(self) -> Path:
        """Write the server's configuration and unpack its binary (once per data folder)."""
        import milvus

        for attempt in range(PORT_ATTEMPTS):
            config = milvus.MilvusServerConfig(data_dir=str(self.data_dir), **self.ports)
            config.set("etcd_log_level", "warn")
            # A SIGKILLed server's sessions stay in etcd for this long, and a restarted one loads
            # nothing until they expire: 30 s by default, shortened so the fault tests stay short.
            config.set("common.session.ttl", SESSION_TTL_S)
            try:
                config.resolve()  # binds each port once to check it is free; writes milvus.yaml
                break
            except RuntimeError as err:
                # A free port found earlier was taken since by another process of the test run.
                if "bind failed" not in str(err) or attempt == PORT_ATTEMPTS - 1:
                    raise
                self.ports = {key: free_port() for key in PORT_KEYS}
                self.port = self.ports["proxy_port"]
        self._embedded_etcd_on_own_ports()
        milvus._initialize_data_files(str(self.data_dir))
        self._configured = True
        return self.data_dir / "bin" / "milvus"

    def _embedded_etcd_on_own_ports(self) -> None:
        """The embedded etcd listens on 2379/2380 whatever ``etcd_port`` says, unless an etcd
        configuration file names its URLs: two servers on one host would otherwise collide."""
        client = f"http://127.0.0.1:{self.ports['etcd_port']}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        etcd = self.data_dir / "configs" / "etcd.yaml"
        etcd.write_text(
            f"name: default\nlisten-client-urls: {client}\nadvertise-client-urls: {client}\n"
            f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
            f"initial-cluster: default={peer}\n"
        )
        config = self.data_dir / "configs" / "milvus.yaml"
        text = config.read_text()
        config.write_text(text.replace("\netcd:\n", f"\netcd:\n  config:\n    path: {etcd}\n", 1))

    def start(self, timeout: float = 120.0) -> MilvusStandaloneServer:
        binary = self.data_dir / "bin" / "milvus"
        if not self._configured:
            binary = self._configure()
        env = {
            **os.environ,
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(self.metrics_port),
            "MILVUS_RUN_DIR": str(self.data_dir / "run"),
            "LD_LIBRARY_PATH": f"{binary.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        }
        log = open(self.log_path, "a")  # noqa: SIM115 - the child writes to it until stopped
        self.proc = subprocess.Popen(
            [str(binary), "run", "standalone"],
            cwd=self.data_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_own_group_dying_with_parent,
        )
        log.close()
        self._wait_serving(timeout)
        return self

    def _wait_serving(self, timeout: float) -> None:
        """Until a client lists collections (the proxy is up and the coordinators answer)."""
        from pymilvus import MilvusClient

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the Milvus server exited:\n{self.logs()}")
            try:
                client = MilvusClient(uri=self.uri, timeout=3)
                try:
                    client.list_collections()
                    return
                finally:
                    client.close()
            except Exception as err:  # not serving yet
                last = err
                time.sleep(0.5)
        raise RuntimeError(f"the Milvus server was not serving after {timeout:.0f} s: {last}")

    def _signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL to the server's whole process group: no shutdown code runs."""
        if self.proc is None:
            return
        self._signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def restart(self, timeout: float = 120.0) -> MilvusStandaloneServer:
        """Start again on the same ports and data folder (stopping it first if it runs)."""
        self.stop()
        return self.start(timeout)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def _own_group_dying_with_parent() -> None:
    """In the child before exec: a process group of its own (kill() reaches every process of
    the server), and SIGKILL when the test process dies, even killed without its finalizers."""
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def serve_for_tests(home: Path) -> Iterator[MilvusStandaloneServer]:
    """The body of a pytest fixture: a server over ``home``, stopped after (also on failure)."""
    server = MilvusStandaloneServer(home / "milvus", home / "milvus.log")
    try:
        yield server.start()
    finally:
        server.kill()  # its data is thrown away: a graceful stop only costs the run seconds
