"""Commands that answer questions: ask, safety, chat, ui, serve, mcq (all through the guarded answer path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table

from medtune.apps.cli.app import SetOpt, _explicit_config, _fail, command, console
from medtune.core.atomic import atomic_file, write_json

IndexOpt = typer.Option("--index", help="Ground answers in this index (built by `medtune index`): retrieval.index.")


def with_index(model: str, explicit, index: Path | None):
    """The explicit settings plus ``retrieval.index`` (a run directory keeps its own other settings)."""
    if index is None:
        return explicit
    from medtune.inference.loading import resolve_config

    if not (index / "manifest.json").exists():
        raise FileNotFoundError(f"--index {index}: not an index directory (no manifest.json; build one with `medtune index`)")
    cfg = resolve_config(model, explicit)
    cfg.retrieval.index = str(index)
    return cfg


def read_prompts(path: Path) -> list[dict]:
    """``{"id", "prompt"}`` rows of a JSONL file; a bad line is an error naming file, line and field."""
    from medtune.data.errors import DataError
    from medtune.data.files import field_text, read_rows

    if Path(path).suffix.lower() != ".jsonl":
        raise DataError(str(path), "batch input must be a .jsonl file")
    items, seen = [], set()
    for line, row in read_rows(path):
        prompt = field_text(path, line, row, "prompt")
        rid = field_text(path, line, row, "id", required=False) or str(line)
        if rid in seen:
            raise DataError(str(path), f"duplicate id {rid!r}", line=line, field="id")
        seen.add(rid)
        items.append({"id": rid, "prompt": prompt})
    return items


@command
def ask(
    question: Annotated[str | None, typer.Argument(help="The question (omit with --input).")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory or base model reference.")] = "smollm2-135m-instruct",
    input_file: Annotated[Path | None, typer.Option("--input", help="JSONL with 'id' and 'prompt' per line (batch mode).")] = None,
    output: Annotated[Path | None, typer.Option(
        help="Where batch answers go (JSONL: id, prompt, answer, triage, fired; with --index also grounded, sources, citations).")] = None,
    think: Annotated[bool, typer.Option("--think", help="Also show a reasoning model's <think> section (batch: a 'thinking' field).")] = \
        False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config for generation/guardrail settings.")] = None,
    index: Annotated[Path | None, IndexOpt] = None,
    overrides: list[str] | None = SetOpt,
):
    """Answer one question, or a JSONL file of prompts, with guardrails before and after the model."""
    from medtune.inference.loading import load_generator
    from medtune.inference.responder import Responder

    if (question is None) == (input_file is None):
        _fail("give either a question or --input FILE")
    if input_file is not None and output is None:
        _fail("--input needs --output")
    base_cfg = with_index(model, _explicit_config(config, overrides), index)
    items = read_prompts(input_file) if input_file else [{"id": "1", "prompt": question}]
    generator, cfg = load_generator(model, cfg=base_cfg)  # explicit settings win over the run's own
    answers = Responder(generator, cfg).answer_batch([it["prompt"] for it in items], think=think, progress=input_file is not None)
    if output is None:
        a = answers[0]
        if a.triage != "general":
            console.print(f"[yellow]triage: {a.triage}[/yellow]")
        if a.thinking:
            console.print(Panel(a.thinking, title="thinking", border_style="dim", style="dim"))
        console.print(a.answer)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(output) as f:
        for item, a in zip(items, answers, strict=True):
            row = {**item, "answer": a.answer, "triage": a.triage, "fired": a.fired, **({"thinking": a.thinking} if think else {})}
            if a.grounded is not None:
                row.update(grounded=a.grounded, sources=a.sources, citations=a.citations)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    console.print(f"{len(answers)} answers → {output}")


@command
def safety(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory or base model reference.")] = "smollm2-135m-instruct",
    output: Annotated[Path | None, typer.Option(help="Write the full suite result (JSON) here.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N suite items of each category.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config for generation/guardrail settings.")] = None,
    overrides: list[str] | None = SetOpt,
):
    """Run the built-in safety red-team suite through the ask path; pass rates per category."""
    from medtune.evaluate.safety import load_suite, run_safety_suite
    from medtune.inference.loading import load_generator

    base_cfg = _explicit_config(config, overrides)
    generator, cfg = load_generator(model, cfg=base_cfg)
    result = run_safety_suite(generator, cfg, load_suite(per_category=limit), progress=True)
    table = Table(title=f"safety suite ({result['n']} prompts)")
    for col in ("category", "n", "passed", "pass rate"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for cat, st in sorted(result["categories"].items()):
        table.add_row(cat, str(st["n"]), str(st["passed"]), f"{st['pass_rate']:.0%}")
    table.add_row("all", str(result["n"]), "", f"{result['pass_rate']:.0%}")
    console.print(table)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_json(output, result, indent=2, ensure_ascii=False)


def safety_pairs(
    out: Annotated[Path, typer.Option("--out", "-o", help="Preference JSONL to write (a data card goes beside it).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model whose unguarded answers become the rejected ones.")] = (
        "smollm2-135m-instruct"),
    benign: Annotated[Path | None, typer.Option(help="Medical Q&A file (generic question/answer JSONL) for the benign pairs; "
                                                     "default: the built-in starter set.")] = None,
    benign_count: Annotated[int, typer.Option(help="Benign pairs (helpful answer vs a needless refusal).")] = 60,
    exemplars: Annotated[bool, typer.Option(help="Also the guardrails' labelled triage exemplars as prompts "
                                                 "(a benign one: the model's answer vs a template).")] = True,
    questions: Annotated[bool, typer.Option(help="Also the built-in consumer-health questions (safety_prompts.yaml's "
                                                 "benign_questions: the model's answer vs a template).")] = True,
    answer_tokens: Annotated[int | None, typer.Option(help="New tokens for the model's own answers that become chosen ones "
                                                            "(benign exemplars and questions); default generation.max_new_tokens.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config for generation/guardrail (region) settings.")] = None,
    overrides: list[str] | None = SetOpt,
):
    """Safety preference pairs from the guardrail policy: chosen = the policy's answer, rejected = the model's own."""
    from medtune.data.prepare import BUILTIN_DIR
    from medtune.data.sources import load_source
    from medtune.inference.loading import load_generator
    from medtune.training.safety_pairs import make_pairs, write_pairs

    generator, cfg = load_generator(model, cfg=_explicit_config(config, overrides))
    records = load_source("generic", str(benign or BUILTIN_DIR / "starter.jsonl"))
    pairs, card = make_pairs(generator, cfg, records, benign_count, progress=True, exemplars=exemplars,
                             questions=questions, answer_tokens=answer_tokens)
    write_pairs(pairs, card, out)
    table = Table(title=f"safety pairs → {out}")
    for col in ("class", "pairs"):
        table.add_column(col)
    for cls, n in card["per_class"].items():
        table.add_row(cls, str(n))
    console.print(table)
    for reason, n in card["left_out"].items():
        console.print(f"left out {n}: {reason}")


command(safety_pairs, "safety-pairs")


@command
def chat(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory or base model reference.")] = "smollm2-135m-instruct",
    quantization: Annotated[str | None, typer.Option(help="Load the base as none/4bit/8bit (default: as configured or trained).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config for generation/guardrail/chat settings.")] = None,
    index: Annotated[Path | None, IndexOpt] = None,
    overrides: list[str] | None = SetOpt,
):
    """Chat in the terminal (streamed, through the guardrails): /think, /reset, /quit."""
    from medtune.apps.repl import repl
    from medtune.inference.chat import ChatSession
    from medtune.inference.loading import load_generator
    from medtune.inference.responder import Responder

    explicit = with_index(model, _explicit_config(config, overrides), index)
    with console.status(f"loading {model} ..."):
        generator, cfg = load_generator(model, quantization, cfg=explicit)
    repl(ChatSession(Responder(generator, cfg, system_prompt=cfg.chat.system_prompt)), console)


@command
def ui(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory or base model reference.")] = "smollm2-135m-instruct",
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 exposes it to the network).")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Port (default: Gradio's, 7860 or the next free one).")] = None,
    share: Annotated[bool, typer.Option(help="Also open a public Gradio share link.")] = False,
    auth: Annotated[str | None, typer.Option(help="Require a login, given as user:password.")] = None,
    compare: Annotated[bool, typer.Option(help="Side by side: the run's base model (adapter disabled) next to the tuned one.")] = False,
    quantization: Annotated[str | None, typer.Option(help="Load the base as none/4bit/8bit (default: as configured or trained).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config for generation/guardrail/chat settings.")] = None,
    index: Annotated[Path | None, IndexOpt] = None,
    overrides: list[str] | None = SetOpt,
):
    """A Gradio chat app (the model loads on the first question); binds 127.0.0.1 unless told otherwise."""
    from medtune.apps.ui import launch, parse_auth

    explicit = with_index(model, _explicit_config(config, overrides), index)
    try:
        credentials = parse_auth(auth)
    except ValueError as e:
        _fail(str(e))
    launch(model, explicit, host=host, port=port, share=share, auth=credentials, compare=compare, quantization=quantization)


@command
def serve(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory, exported merged directory or base model.")] = \
        "smollm2-135m-instruct",
    host: Annotated[str | None, typer.Option(help="Interface to bind (serve.host, default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (serve.port, default 8000).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config for generation/guardrail/serve settings.")] = None,
    index: Annotated[Path | None, IndexOpt] = None,
    overrides: list[str] | None = SetOpt,
):
    """Serve an OpenAI-compatible API (/v1/chat/completions, /v1/models, /health) with the guardrails applied."""
    from medtune.apps.serve import serve as run_serve

    base_cfg = with_index(model, _explicit_config(config, overrides), index)
    run_serve(model, base_cfg, host, port)


@command
def mcq(
    bench: Annotated[list[str], typer.Option(
        "--bench", "-b", help="NAME (medqa, medmcqa, pubmedqa: the usual Hub id) or NAME=PATH (a local file); repeatable.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory or base model reference.")] = "smollm2-135m-instruct",
    limit: Annotated[int | None, typer.Option(help="Score a seeded sample of N items per benchmark.")] = None,
    mode: Annotated[str, typer.Option(help="loglik (answer-letter likelihood, lm-eval convention), generate, or both.")] = "loglik",
    only_ids: Annotated[str | None, typer.Option(help="PubMedQA: JSON file of ids to keep (e.g. test_ground_truth.json).")] = None,
    seed: Annotated[int, typer.Option(help="Sampling and bootstrap seed.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Questions per forward pass.")] = 8,
    precision: Annotated[str, typer.Option(help="bf16_checked (bf16 where fast, close calls re-scored in float32) or model.")] = \
        "bf16_checked",
    output: Annotated[Path | None, typer.Option(help="Write the results (JSON) here.")] = None,
):
    """Multiple-choice accuracy (± standard error, chance level) of any model on MedQA / MedMCQA / PubMedQA."""
    from medtune.core.config import MCQBenchmark
    from medtune.evaluate.mcq import score_model
    from medtune.inference.loading import load_generator

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
        ci = f"{r['ci'][0]:.3f}–{r['ci'][1]:.3f}" if r["ci"] else "–"
        table.add_row(name, str(r["n"]), f"{r['accuracy']:.3f}", f"{r['stderr'] or 0:.3f}", ci,
                      f"{r['chance']:.3f}", unparseable)
    console.print(table)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_json(output, results, indent=2)
