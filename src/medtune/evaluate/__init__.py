"""The evaluate stage: the base model and the tuned model on the same held-out items.

For each model: eval loss and token accuracy on the held-out split (TRL's own evaluation,
answer tokens only), and ROUGE of greedy answers against the reference answers. The base
model is the tuned model with its adapter switched off, so both share one loaded base.
Writes ``eval/report.json`` (``{"results": {"base": …, "finetuned": …}}``), ``report.md`` and
``answers.jsonl``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from medtune.config import RunConfig
from medtune.data.prepare import read_jsonl
from medtune.evaluate.metrics import rouge
from medtune.rundir import RunDir

METRICS = ("eval_loss", "perplexity", "token_accuracy", "rouge1", "rouge2", "rougeL")


def evaluate(cfg: RunConfig, run: RunDir) -> dict:
    import math
    from contextlib import nullcontext

    from medtune.generate import load_generator
    from medtune.train import examples_dataset, sft_config

    records = read_jsonl(run.data / "eval.jsonl")
    if not records:
        raise ValueError(f"{run.data / 'eval.jsonl'}: no held-out records to evaluate (data.eval_fraction is 0?)")
    generator, _ = load_generator(str(run.path), quantization="none" if cfg.eval.base_precision == "full" else None)
    model = generator.model
    gen_records = records[: cfg.eval.max_samples] if cfg.eval.max_samples else records
    conversations = [r.dialogue()[:-1] for r in gen_records]
    references = [r.dialogue()[-1]["content"] for r in gen_records]
    loss_trainer = _loss_trainer(cfg, run, model, generator.tokenizer, examples_dataset(records, cfg), sft_config)

    results, answers = {}, {}
    variants = [("finetuned", nullcontext)] + ([("base", model.disable_adapter)] if cfg.eval.compare_base else [])
    start = time.time()
    for name, context in variants:
        with context():
            scores = loss_trainer.evaluate()
            answers[name] = generator.generate(
                conversations, cfg.generation, max_new_tokens=cfg.eval.max_new_tokens, temperature=cfg.eval.temperature, progress=True
            )
        loss = scores["eval_loss"]
        results[name] = {
            "eval_loss": loss,
            "perplexity": math.exp(loss) if loss < 50 else float("inf"),
            "token_accuracy": scores.get("eval_mean_token_accuracy"),
            **rouge(answers[name], references),
        }
    report = {
        "results": results,
        "n_eval_records": len(records),
        "n_generated": len(gen_records),
        "generation": {"max_new_tokens": cfg.eval.max_new_tokens, "temperature": cfg.eval.temperature},
        "base_precision": cfg.eval.base_precision,
        "seconds": round(time.time() - start, 1),
    }
    write_report(run.eval, report, gen_records, references, answers)
    run.update_manifest(eval={"report": str(run.eval / "report.json"), "seconds": report["seconds"]})
    return report


def _loss_trainer(cfg, run, model, tokenizer, dataset, sft_config):
    """An SFTTrainer used only for ``evaluate()``: the same tokenization and masking as training."""
    from trl import SFTTrainer

    args = sft_config(cfg, run, has_eval=True)
    args.report_to = []
    args.output_dir = str(run.eval / "tmp")
    # SFTTrainer insists on a train set; it is never trained here
    return SFTTrainer(model=model, args=args, train_dataset=dataset, eval_dataset=dataset, processing_class=tokenizer)


def write_report(out: Path, report: dict, records, references, answers: dict[str, list[str]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    with open(out / "answers.jsonl", "w", encoding="utf-8") as f:
        for i, (r, ref) in enumerate(zip(records, references)):
            row = {"id": r.id, "question": r.dialogue()[-2]["content"], "reference": ref}
            row.update({name: answers[name][i] for name in answers})
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "report.md").write_text(report_markdown(report, records, references, answers))


def report_markdown(report: dict, records, references, answers) -> str:
    res = report["results"]
    names = [n for n in ("base", "finetuned") if n in res]
    lines = ["# Evaluation report", "", f"{report['n_eval_records']} held-out records; answers generated for {report['n_generated']}.", ""]
    lines += ["| metric | " + " | ".join(names) + (" | change |" if len(names) == 2 else " |"), "|---" * (len(names) + 1 + (len(names) == 2)) + "|"]
    for m in METRICS:
        vals = [res[n].get(m) for n in names]
        if any(v is None for v in vals):
            continue
        row = f"| {m} | " + " | ".join(f"{v:.4f}" for v in vals)
        if len(names) == 2:
            row += f" | {vals[1] - vals[0]:+.4f}"
        lines.append(row + " |")
    lines += ["", "## Examples", ""]
    for i, r in enumerate(records[:3]):
        lines += [f"**Q:** {r.dialogue()[-2]['content']}", "", f"**Reference:** {references[i]}", ""]
        lines += [f"**{n}:** {answers[n][i]}" + "\n" for n in names]
    return "\n".join(lines) + "\n"
