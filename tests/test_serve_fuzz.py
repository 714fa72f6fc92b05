"""The API fuzzed from its own OpenAPI schema: the schemathesis CLI against a live `medtune serve` (the
``live_server`` fixture: a subprocess on loopback, the tiny model, an API key).

Every check schemathesis has runs on every response: no 5xx, status code, content type, headers and
body (each streamed event's JSON too) as the schema declares them, invalid requests refused, the key
enforced (a request without it must get 401), unsupported methods 405; ``positive_data_acceptance``
is replaced by ``serve_fuzz_hooks.valid_request_accepted``. Each request must be answered within
``--request-timeout`` (no hang), the run ends within ``--max-time``, and afterwards no worker may be
left busy. ``MEDTUNE_API_FUZZ_EXAMPLES`` sets the examples per operation and ``MEDTUNE_API_FUZZ_SECONDS``
the time cap (5 and 10 s here, derandomized; ``make fuzz-api``: 300 and 30 minutes, random).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import REPO

pytest.importorskip("fastapi")
ST = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or pytest.skip("schemathesis is not installed")
EXAMPLES = int(os.environ.get("MEDTUNE_API_FUZZ_EXAMPLES", "5"))
MAX_TIME = int(os.environ.get("MEDTUNE_API_FUZZ_SECONDS", "10"))


def test_api_conforms_to_its_schema(live_server, tmp_path):
    tally, report = tmp_path / "tally.tsv", tmp_path / "report.json"
    cmd = [ST, "run", f"{live_server.url}/openapi.json", "--checks", "all", "--exclude-checks", "positive_data_acceptance",
           "-H", f"Authorization: Bearer {live_server.key}", "-n", str(EXAMPLES), "--max-time", str(MAX_TIME), "--workers", "3",
           "--request-timeout", "15", "--report", "json", "--report-json-path", str(report), "--no-color", "--output-truncate", "false"]
    if EXAMPLES <= 25:
        cmd.append("--generation-deterministic")  # make test: the same cases every run
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "serve_fuzz_hooks", "PYTHONPATH": str(REPO / "tests"), "MEDTUNE_FUZZ_TALLY": str(tally)}
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=MAX_TIME + 60, cwd=tmp_path)  # its .schemathesis/ there
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    result = json.loads(report.read_text())
    assert result["complete"] and not result["failures"] and not result["errors"]
    cases = Counter(line.split("\t")[0] for line in tally.read_text().splitlines())
    statuses = Counter(line.split("\t")[1] for line in tally.read_text().splitlines())
    print(f"\nschemathesis: {result['test_cases']['generated']} cases in {result['running_time']:.1f}s; "
          f"responses per operation {dict(cases)}; statuses {dict(sorted(statuses.items()))}")  # shown with -s (make fuzz-api)
    assert cases["POST /v1/chat/completions"] >= 10 and {"200", "400"} <= set(statuses)
    if result["stop_reason"] == "completed":  # not cut short by --max-time (a loaded machine)
        assert set(cases) == {"GET /health", "GET /v1/models", "POST /v1/chat/completions"} and "401" in statuses
    health = live_server.wait_idle()
    assert health["workers_busy"] == 0 and health["waiting"] == 0 and health["workers_free"] == health["workers"]


def test_schema_documents_what_the_server_answers(live_server):
    """The published schema: OpenAI-shaped errors, the streaming response, no FastAPI 422 (the server answers 400)."""
    import httpx

    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    chat = spec["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert set(chat) == {"200", "400", "401", "404", "408", "413", "429", "503"}
    assert set(chat["200"]["content"]) == {"application/json", "text/event-stream"}
    assert all(r["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
               for code, r in chat.items() if code != "200")
    assert not any("422" in op["responses"] for ops in spec["paths"].values() for op in ops.values())
    assert spec["paths"]["/v1/models"]["get"]["security"] == [{"bearer": []}] and "security" not in spec["paths"]["/health"]["get"]
    request = spec["components"]["schemas"]["ChatRequest"]["properties"]
    assert request["max_tokens"]["anyOf"][0]["maximum"] == 16  # the server's own limit (serve.max_tokens), not a guess
