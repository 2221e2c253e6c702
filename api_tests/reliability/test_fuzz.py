"""Fuzz the live API from its own OpenAPI document: no 5xx, and every answer as documented.

schemathesis (every check: status codes, content types, response schemas, headers, auth,
schema-invalid bodies refused, schema-valid ones accepted, stateful upload → read → delete
chains) drives a real server with the write key. The request count and the 5xx count come from
the server's own request counter, not from the fuzzer. `make fuzz` runs it at a large count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from api_tests.reliability.conftest import Launch
from api_tests.reliability.support import env_int, requests_by_status
from support.server import API_KEY, REPO

CONFIG = Path(__file__).with_name("schemathesis.toml")


def run_schemathesis(
    url: str, examples: int, seed: int, seconds: int, cwd: Path
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run"]
    command += [f"{url}/openapi.json", "--max-examples", str(examples), "--seed", str(seed)]
    if seconds:  # keep fuzzing (new seeds, stateful chains) until the time is spent
        command += ["--max-time", str(seconds)]
    command += ["--workers", "1", "--header", f"X-API-Key: {API_KEY}", "--no-color"]
    command += ["--generation-database", "none", "--continue-on-failure"]
    command += ["--report", "junit", "--report-dir", str(cwd / "report")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=seconds + 1800
    )


def test_fuzz_finds_no_5xx_and_no_schema_violation(launch: Launch, tmp_path: Path) -> None:
    # Its own server: fuzzed uploads and deletes must not disturb the other tests' gallery.
    server = launch()
    examples = env_int("TPS_FUZZ_EXAMPLES", 15)
    seconds = env_int("TPS_FUZZ_SECONDS", 0)
    seed = env_int("TPS_FUZZ_SEED", 0)
    before = requests_by_status(httpx.get(f"{server.url}/metrics").text)
    done = run_schemathesis(server.url, examples, seed, seconds, tmp_path)
    after = requests_by_status(httpx.get(f"{server.url}/metrics").text)

    sent = {code: after.get(code, 0) - before.get(code, 0) for code in after}
    sent = {code: n for code, n in sorted(sent.items()) if n}
    total = sum(sent.values()) - 2  # our first /metrics and the fuzzer's /openapi.json
    server_errors = sum(n for code, n in sent.items() if code.startswith("5"))
    summary = {
        "examples_per_operation": examples,
        "seconds": seconds or None,
        "seed": seed,
        "requests": total,
        "responses_by_status": sent,
        "5xx": server_errors,
        "schemathesis_exit_code": done.returncode,
        "schemathesis_summary": done.stdout.strip().splitlines()[-1] if done.stdout else "",
    }
    print(json.dumps(summary, indent=2))
    if out := os.environ.get("TPS_RELIABILITY_OUT"):
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "fuzz.json").write_text(json.dumps(summary, indent=2) + "\n")

    assert total >= 100, f"the fuzzer sent only {total} requests:\n{done.stdout[-3000:]}"
    assert server_errors == 0, f"{server_errors} answers were 5xx:\n{server.logs()}"
    assert done.returncode == 0, f"schemathesis found problems:\n{done.stdout[-12000:]}"
    assert "201" in sent, "no fuzzed upload ever succeeded: the write path went untested"
    # Nothing the fuzzer did left the served index and its files disagreeing.
    assert httpx.get(f"{server.url}/readyz").status_code == 200
