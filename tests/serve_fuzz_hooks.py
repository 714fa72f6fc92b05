"""schemathesis hooks for tests/test_serve_fuzz.py (loaded by the CLI through ``SCHEMATHESIS_HOOKS``).

``valid_request_accepted`` replaces schemathesis' ``positive_data_acceptance``: a request its schema
allows must be answered, except for ``SEMANTIC`` refusals that JSON Schema cannot express. Every
case it sees is tallied by operation into the file ``MEDTUNE_FUZZ_TALLY`` names (one line a case).
"""

from __future__ import annotations

import os

import schemathesis

SEMANTIC = {"last_message_not_user", "context_length_exceeded"}
"""Error codes a schema-valid request may still get: the conversation must end with a user turn, and
the rendered prompt is counted in tokens."""


@schemathesis.check
def valid_request_accepted(ctx, response, case) -> None:
    if tally := os.environ.get("MEDTUNE_FUZZ_TALLY"):
        with open(tally, "a", encoding="utf-8") as f:
            f.write(f"{case.operation.label}\t{response.status_code}\n")
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code < 400:
        return
    if response.status_code in (401, 404, 405):  # the key left out on purpose, an unknown path, a method probe
        return
    code = (response.json().get("error") or {}).get("code") if response.status_code == 400 else None
    if code not in SEMANTIC:
        raise AssertionError(f"a request its schema allows was refused: {response.status_code} {response.text[:300]}")
