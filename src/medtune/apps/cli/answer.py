"""Commands that answer questions: ask, safety, chat, ui, serve, mcq (all through the guarded answer path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from medtune.apps.cli.app import SetOpt, _explicit_config, _fail, command, console


@command
def ask(
    question: Optional[str] = typer.Argument(None, help="The question (omit with --input)."),
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Run directory or base model reference."),
    input_file: Optional[Path] = typer.Option(None, "--input", help="JSONL with 'id' and 'prompt' per line (batch mode)."),
    output: Optional[Path] = typer.Option(None, help="Where batch answers go (JSONL: id, prompt, answer, triage)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config for generation/guardrail settings."),
    overrides: Optional[list[str]] = SetOpt,
):
    """Answer one question, or a JSONL file of prompts, with guardrails before and after the model."""
    from medtune.inference.ask import answer_all, read_prompts
    from medtune.inference.generate import load_generator

    if (question is None) == (input_file is None):
        _fail("give either a question or --input FILE")
    if input_file is not None and output is None:
        _fail("--input needs --output")
    base_cfg = _explicit_config(config, overrides)
    items = read_prompts(input_file) if input_file else [{"id": "1", "prompt": question}]
    generator, cfg = load_generator(model, cfg=base_cfg)  # explicit settings win over the run's own
    results = answer_all(generator, cfg, items, progress=input_file is not None)
    if output is None:
        r = results[0]
        if r["triage"] != "general":
            console.print(f"[yellow]triage: {r['triage']}[/yellow]")
        console.print(r["answer"])
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    console.print(f"{len(results)} answers → {output}")


@command
def safety(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Run directory or base model reference."),
    output: Optional[Path] = typer.Option(None, help="Write the full suite result (JSON) here."),
    limit: Optional[int] = typer.Option(None, help="Only the first N suite items of each category."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config for generation/guardrail settings."),
    overrides: Optional[list[str]] = SetOpt,
):
    """Run the built-in safety red-team suite through the ask path; pass rates per category."""
    from medtune.evaluate.safety import load_suite, run_safety_suite
    from medtune.inference.generate import load_generator

    base_cfg = _explicit_config(config, overrides)
    generator, cfg = load_generator(model, cfg=base_cfg)
    items = load_suite()
    if limit:
        seen: dict[str, int] = {}
        items = [it for it in items if (seen.__setitem__(it["category"], seen.get(it["category"], 0) + 1) or seen[it["category"]] <= limit)]
    result = run_safety_suite(generator, cfg, items, progress=True)
    table = Table(title=f"safety suite ({result['n']} prompts)")
    for col in ("category", "n", "passed", "pass rate"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for cat, st in sorted(result["categories"].items()):
        table.add_row(cat, str(st["n"]), str(st["passed"]), f"{st['pass_rate']:.0%}")
    table.add_row("all", str(result["n"]), "", f"{result['pass_rate']:.0%}")
    console.print(table)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2, ensure_ascii=False))


@command
def chat(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Run directory or base model reference."),
    quantization: Optional[str] = typer.Option(None, help="Load the base as none/4bit/8bit (default: as configured or trained)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config for generation/guardrail/chat settings."),
    overrides: Optional[list[str]] = SetOpt,
):
    """Chat in the terminal (streamed, through the guardrails): /think, /reset, /quit."""
    from medtune.apps.repl import repl
    from medtune.inference.chat import ChatSession
    from medtune.inference.generate import load_generator

    explicit = _explicit_config(config, overrides)
    with console.status(f"loading {model} ..."):
        generator, cfg = load_generator(model, quantization, cfg=explicit)
    repl(ChatSession(generator, cfg), console)


@command
def ui(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Run directory or base model reference."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0 exposes it to the network)."),
    port: Optional[int] = typer.Option(None, help="Port (default: Gradio's, 7860 or the next free one)."),
    share: bool = typer.Option(False, help="Also open a public Gradio share link."),
    auth: Optional[str] = typer.Option(None, help="Require a login, given as user:password."),
    compare: bool = typer.Option(False, help="Side by side: the run's base model (adapter disabled) next to the tuned one."),
    quantization: Optional[str] = typer.Option(None, help="Load the base as none/4bit/8bit (default: as configured or trained)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config for generation/guardrail/chat settings."),
    overrides: Optional[list[str]] = SetOpt,
):
    """A Gradio chat app (the model loads on the first question); binds 127.0.0.1 unless told otherwise."""
    from medtune.apps.ui import launch, parse_auth

    explicit = _explicit_config(config, overrides)
    try:
        credentials = parse_auth(auth)
    except ValueError as e:
        _fail(str(e))
    launch(model, explicit, host=host, port=port, share=share, auth=credentials, compare=compare, quantization=quantization)


@command
def serve(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Run directory, exported merged directory or base model."),
    host: Optional[str] = typer.Option(None, help="Interface to bind (serve.host, default 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port (serve.port, default 8000)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config for generation/guardrail/serve settings."),
    overrides: Optional[list[str]] = SetOpt,
):
    """Serve an OpenAI-compatible API (/v1/chat/completions, /v1/models, /health) with the guardrails applied."""
    from medtune.apps.serve import serve as run_serve

    base_cfg = _explicit_config(config, overrides)
    run_serve(model, base_cfg, host, port)


@command
def mcq(
    bench: list[str] = typer.Option(..., "--bench", "-b", help="NAME (medqa, medmcqa, pubmedqa: the usual Hub id) or NAME=PATH (a local file); repeatable."),
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Run directory or base model reference."),
    limit: Optional[int] = typer.Option(None, help="Score a seeded sample of N items per benchmark."),
    mode: str = typer.Option("loglik", help="loglik (answer-letter likelihood, lm-eval convention), generate, or both."),
    only_ids: Optional[str] = typer.Option(None, help="PubMedQA: JSON file of ids to keep (e.g. test_ground_truth.json)."),
    seed: int = typer.Option(0, help="Sampling and bootstrap seed."),
    batch_size: int = typer.Option(8, help="Questions per forward pass."),
    precision: str = typer.Option("bf16_checked", help="bf16_checked (bf16 where fast, close calls re-scored in float32) or model."),
    output: Optional[Path] = typer.Option(None, help="Write the results (JSON) here."),
):
    """Multiple-choice accuracy (± standard error, chance level) of any model on MedQA / MedMCQA / PubMedQA."""
    from medtune.core.config import MCQBenchmark
    from medtune.evaluate.mcq import score_model
    from medtune.inference.generate import load_generator

    if mode not in ("loglik", "generate", "both"):
        _fail(f"--mode must be loglik, generate or both, got {mode!r}")
    if precision not in ("bf16_checked", "model"):
        _fail(f"--precision must be bf16_checked or model, got {precision!r}")
    benches = []
    for spec in bench:
        name, _, path = spec.partition("=")
        benches.append(MCQBenchmark(name=name, path=path or None, limit=limit, only_ids=only_ids if name == "pubmedqa" else None))
    generator, cfg = load_generator(model, quantization="none")
    results = score_model(generator, cfg.generation, benches, mode, batch_size=batch_size, seed=seed, precision=precision)
    table = Table(title=f"MCQ accuracy ({mode}) — {model}")
    for col in ("benchmark", "n", "accuracy", "± s.e.", "95% CI", "chance", "unparseable"):
        table.add_column(col, justify="left" if col == "benchmark" else "right")
    for name, r in results.items():
        gen = r.get("generate", r)
        unparseable = f"{gen['unparseable_rate']:.1%}" if "unparseable_rate" in gen else "–"
        table.add_row(name, str(r["n"]), f"{r['accuracy']:.3f}", f"{r['stderr'] or 0:.3f}", f"{r['ci'][0]:.3f}–{r['ci'][1]:.3f}" if r["ci"] else "–",
                      f"{r['chance']:.3f}", unparseable)
    console.print(table)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2))
