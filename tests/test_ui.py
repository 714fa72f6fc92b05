"""medtune.apps.ui: the Gradio app in a real headless Chromium (Debian ``chromium`` driven by playwright),
served by the real ``medtune ui --index`` command (a grounded answer's source is a link that opens); plus lazy
loading, auth parsing and base-vs-tuned on a tuned run.

The browser test saves a screenshot to ``$MEDTUNE_ARTIFACTS/ui.png`` (default ``<repo>/artifacts/ui.png``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import REPO

from medtune.apps.ui import EXAMPLES, answer_turn, build, parse_auth
from medtune.core.config import load_config
from medtune.core.models import ModelError

CHROMIUM = Path("/usr/bin/chromium")
EMERGENCY = "my dad's face is drooping and his speech is slurred"
DISCLAIMER_START = "This is general health information"


def test_parse_auth():
    assert parse_auth(None) is None
    assert parse_auth("ann:s3cret:x") == ("ann", "s3cret:x")
    for bad in ("ann", "ann:", ":pw"):
        with pytest.raises(ValueError, match="user:password"):
            parse_auth(bad)


def test_build_loads_nothing_and_compare_needs_a_run():
    app = build("smollm2-135m-instruct", load_config(None, ["generation.max_new_tokens=7"]))
    assert not app.models.loaded and app.models.guardrails._classifier is None
    assert app.models.cfg.generation.max_new_tokens == 7
    with pytest.raises(ModelError, match="--compare needs a run directory"):
        build("smollm2-135m-instruct", compare=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(proc: subprocess.Popen, url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"medtune ui exited with {proc.returncode}: {proc.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not come up in {timeout}s")


HEART = {"id": "hr-1", "title": "Resting heart rate", "text": "A normal resting heart rate for adults is between 60 and 100 beats "
         "per minute. Fit athletes can have a resting heart rate closer to 40 beats per minute."}


@pytest.fixture
def ui_server(tmp_path):
    from medtune.core.config import IndexSourceConfig, RetrievalConfig
    from medtune.retrieval import Index

    port = free_port()
    leaflet = tmp_path / "leaflets.jsonl"
    leaflet.write_text(json.dumps({**HEART, "url": f"http://127.0.0.1:{port}/?source=hr-1"}) + "\n")
    Index.build(tmp_path / "index", [IndexSourceConfig(path=str(leaflet))], RetrievalConfig()).close()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(tmp_path / "ui.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "medtune", "ui", "--port", str(port), "--quantization", "none", "--index", str(tmp_path / "index"),
         "--set", "generation.max_new_tokens=8", "--set", "generation.temperature=0"],
        stdout=log, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
    )
    proc.stdout = log
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_server(proc, url)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.seek(0)
        print(log.read()[-3000:])
        log.close()


def screenshot_path() -> Path:
    folder = Path(os.environ.get("MEDTUNE_ARTIFACTS", REPO / "artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "ui.png"


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")
def test_ui_in_a_real_browser(ui_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run",
                  "--disable-sync"],
            viewport={"width": 1280, "height": 1100},
        )
        try:
            page = browser.new_page()
            page.goto(ui_server, wait_until="domcontentloaded", timeout=120_000)
            banner = page.locator("#disclaimer-banner")
            expect(banner).to_be_visible(timeout=120_000)
            expect(banner).to_contain_text("Not medical advice")
            expect(banner).to_contain_text("call 911")
            expect(page.get_by_text(EXAMPLES[0]).first).to_be_visible()

            chat = page.locator("#chat")
            box = page.locator("#question textarea")
            box.fill("What is a normal resting heart rate?")
            page.locator("#send").click()
            # the first question loads the model (lazily): the loading message shows, then a streamed answer
            expect(chat).to_contain_text(DISCLAIMER_START, timeout=600_000)
            expect(chat).not_to_contain_text("Loading the model")
            expect(page.locator("#model-status")).to_contain_text("ready")
            answer = chat.locator(".bot-row").first.inner_text()
            assert len(answer.split(DISCLAIMER_START)[0].strip()) > 0, answer  # the model wrote something first
            assert "triage:" not in answer  # benign answers carry no triage flag
            source = chat.locator("a", has_text=HEART["title"])  # grounded in the index: its source is a link
            expect(source).to_be_visible()
            assert source.get_attribute("href").endswith("/?source=hr-1")
            with page.context.expect_page() as opened:
                source.click()
            assert opened.value.url.endswith("/?source=hr-1")
            opened.value.close()

            box.fill(EMERGENCY)
            box.press("Enter")
            expect(chat).to_contain_text("triage: emergency", timeout=300_000)
            expect(chat).to_contain_text("Call 911 now")
            expect(banner).to_be_in_viewport()

            shot = screenshot_path()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


@pytest.mark.slow
def test_ui_base_vs_tuned_on_a_tuned_run(trained_run):
    """--compare: the same weights answer with and without the adapter; the adapter is back on afterwards."""
    import torch

    _, run, _, _ = trained_run
    explicit = load_config(None, ["generation.max_new_tokens=5", "generation.temperature=0"])
    app = build(str(run.path), explicit, compare=True, quantization="none")
    models = app.models
    tuned, base = models.load()
    model = tuned.generator.model
    assert base.generator.model._model is model and base.guardrails is tuned.guardrails is models.guardrails  # one model, one encoder
    ids = tuned.generator.tokenizer("Fever in adults", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        with_adapter = model(ids).logits
        with model.disable_adapter():
            without = model(ids).logits
    assert not torch.equal(with_adapter, without)  # the adapter changes the model, so the columns compare something

    *_, (tuned_msgs, tuned_hist) = answer_turn(models, tuned, [], "What is a normal body temperature?", 0.0, 5, False)
    *_, (base_msgs, base_hist) = answer_turn(models, base, [], "What is a normal body temperature?", 0.0, 5, False)
    for msgs in (tuned_msgs, base_msgs):
        assert msgs[-1]["content"].endswith(models.guardrails.disclaimer) and "triage" not in msgs[-1]["content"]
    assert len(tuned_hist) == len(base_hist) == 2
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, with_adapter)  # generating the base column re-enabled the adapter

    *_, (flagged, _) = answer_turn(models, base, base_hist, EMERGENCY, 0.0, 5, False)
    assert flagged[-1]["content"].startswith("**⚠️ triage: emergency**") and "Call 911" in flagged[-1]["content"]
