"""The fuzz of api_tests/reliability/test_fuzz.py against a Milvus-backed server: fuzzed filters
become Milvus filter expressions, fuzzed uploads Milvus rows. No 5xx, nothing off the document.
Its own collection and image folder, so the other scale-out tests' gallery is not disturbed."""

from __future__ import annotations

from pathlib import Path

import httpx

from api_tests.reliability.support import env_int, requests_by_status
from api_tests.reliability.test_fuzz import run_schemathesis
from support.milvus import MilvusLiteServer
from support.server import ServiceProcess, store_env


def test_fuzz_on_the_milvus_store_finds_no_5xx(
    milvus: MilvusLiteServer, random_bundle: Path, tmp_path: Path
) -> None:
    env = store_env(
        random_bundle,
        milvus.store("fuzz"),
        tmp_path / "uploads",
        TPS_CREATE_STORE="true",
        TPS_MAX_UPLOAD_BYTES=str(4 * 1024 * 1024),
    )
    server = ServiceProcess(env, tmp_path / "service.log").start().wait_ready(180)
    try:
        before = requests_by_status(httpx.get(f"{server.url}/metrics").text)
        done = run_schemathesis(
            server.url, env_int("TPS_FUZZ_EXAMPLES", 15), env_int("TPS_FUZZ_SEED", 0), 0, tmp_path
        )
        after = requests_by_status(httpx.get(f"{server.url}/metrics").text)
    finally:
        server.stop()
    sent = {code: after.get(code, 0) - before.get(code, 0) for code in after}
    assert sum(sent.values()) >= 100, done.stdout[-3000:]
    assert not any(code.startswith("5") and n for code, n in sent.items()), server.logs()
    assert done.returncode == 0, f"schemathesis found problems:\n{done.stdout[-12000:]}"
    assert sent.get("201"), "no fuzzed upload ever succeeded: the write path went untested"
