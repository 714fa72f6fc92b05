"""The model card (``README.md``): a ``huggingface_hub.ModelCard`` with the Hub's metadata block.

Metadata: licence and language as the base model declares them (GGUF header or the base's own
card; the language falls back to ``data.language``, then English), the upstream base model, the
Hub datasets among the sources, tags. Body: base model, data and licences, training config,
evaluation, export checks, intended use, limitations, files, and the medical disclaimer, which is
the guardrails' own (``guardrails.disclaimer`` as shown to users), so there is one wording.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml
from huggingface_hub import ModelCard, ModelCardData
from tabulate import tabulate

from medtune.core.atomic import atomic_path
from medtune.core.config import DEFAULT_DISCLAIMER, RunConfig
from medtune.core.rundir import RunDir

log = logging.getLogger(__name__)

TAGS = ["medical", "medtune", "lora", "gguf"]

TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

> **Medical disclaimer.** {{ disclaimer }}

## Base model

- reference: `{{ reference }}`{% if upstream %} (upstream `{{ upstream }}`){% endif %}
- identity: `{{ identity }}`

## Data

{{ data_table }}

Split: {{ split.get('train', '?') }} train / {{ split.get('eval', '?') }} held-out records (seed {{ split.get('seed', '?') }}).
{% for note in licence_notes %}
{{ note }}
{% endfor %}
## Training

```yaml
{{ training }}
```

## Evaluation (held-out split)

{{ evaluation }}
{% if export_checks %}
## Export checks

{{ export_checks }}
{% endif %}{% if merge_check %}
{{ merge_check }}
{% endif %}
## Intended use

Research, teaching and prototyping of medical question answering: general, plain-language health information, \
served behind medtune's guardrails (`medtune serve`), which triage emergencies, crises and harmful requests \
before the model and remove dose instructions after it.

## Limitations

- A small model fine-tuned on a small dataset: it makes factual errors and can sound confident when wrong.
- Not evaluated clinically; the figures above are text-overlap and perplexity metrics, not safety or accuracy audits.
- The exported files (merged, GGUF, Ollama) do not contain the guardrails; serving them directly removes that layer.
- English only unless the training data says otherwise; knowledge is frozen at the data's date.

## Files

{% for name, value in files %}- `{{ name }}`: {{ value }}
{% endfor %}
> {{ disclaimer }}

"""  # Jinja drops one trailing newline: the card still ends with one


def disclaimer(cfg: RunConfig) -> str:
    """The medical disclaimer as the guardrails show it; the default wording when the run turned it off."""
    return cfg.guardrails.disclaimer_text or DEFAULT_DISCLAIMER


def write_model_card(run: RunDir, cfg: RunConfig, out: Path, done: dict) -> Path:
    """README.md: base model, data and licences, training config, evaluation, intended use, limitations, disclaimer."""
    card = _read_json(run.data / "data_card.json")
    manifest = run.manifest()
    base = manifest.get("base_model") or manifest.get("model") or {"reference": cfg.model.name}
    sources = card.get("sources", [])
    licences: dict[str, int] = {}
    for src in sources:
        for name, n in (src.get("licenses") or {}).items():
            licences[name] = licences.get(name, 0) + n
    declared = base_metadata(cfg)
    data = ModelCardData(
        license=declared.get("license"),
        language=declared.get("language") or cfg.data.language or "en",
        base_model=_upstream(cfg),
        datasets=hub_datasets(sources) or None,
        tags=TAGS,
        library_name="transformers",
        pipeline_tag="text-generation",
    )
    model_card = ModelCard.from_template(
        data,
        template_str=TEMPLATE,
        title=cfg.name,
        disclaimer=disclaimer(cfg),
        reference=cfg.model.name,
        upstream=_upstream(cfg),
        identity=json.dumps(base, default=str),
        data_table=_table(
            ["source", "kind", "records used", "licences"],
            [[f"`{s.get('path')}`", s.get("kind"), s.get("records_used", "?"), _licence_cell(s)] for s in sources],
        ),
        split=card.get("split", {}),
        licence_notes=_licence_notes(licences),
        training=yaml.safe_dump({k: getattr(cfg, k).model_dump(mode="json") for k in ("model", "lora", "train")}, sort_keys=False).strip(),
        evaluation=_evaluation(_read_json(run.eval / "report.json")),
        export_checks=_export_checks(done["verify"]) if "verify" in done else "",
        merge_check=_merge_check(done["merged"]) if "merged" in done else "",
        files=[(k, _file_entry(v)) for k, v in done.items() if k != "verify"],
    )
    path = out / "README.md"
    with atomic_path(path) as tmp:
        model_card.save(tmp)
    log.info("model card → %s", path)
    return path


def base_metadata(cfg: RunConfig) -> dict:
    """``{"license", "language"}`` as the base model declares them (GGUF header, or its model card); {} when unknown."""
    from medtune.core.models import BUILTIN_MODELS, builtin_gguf

    name = cfg.model.name
    try:
        if name in BUILTIN_MODELS or name.endswith(".gguf"):
            from gguf import GGUFReader

            reader = GGUFReader(str(builtin_gguf(name) if name in BUILTIN_MODELS else Path(name)))

            def field(key: str):
                found = reader.get_field(key)
                return None if found is None else found.contents()

            return {"license": field("general.license"), "language": field("general.languages")}
        readme = Path(name) / "README.md"
        if Path(name).exists() and not readme.exists():
            return {}
        declared = ModelCard.load(readme if readme.exists() else name).data  # a Hub id: its card, as the base model was fetched
        return {"license": declared.license, "language": declared.language}
    except Exception as e:  # a missing or unreadable card only leaves the field out
        log.info("base model licence/language unknown (%s: %s)", type(e).__name__, str(e).split("\n")[0])
        return {}


def hub_datasets(sources: list[dict]) -> list[str]:
    """The Hub dataset ids among the data card's sources (read from the Hub: no input file hash)."""
    from medtune.data.sources.rows import is_hub_id

    return sorted({s["path"] for s in sources if s.get("kind") != "replay" and not s.get("input_sha256") and is_hub_id(s.get("path", ""))})


def _table(header: list[str], rows: list[list]) -> str:
    """A GitHub Markdown table; cells are written as given (no number re-formatting)."""
    return tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)


def _licence_cell(src: dict) -> str:
    return ", ".join(f"{k} ({v})" for k, v in (src.get("licenses") or {}).items()) or "not stated"


def _licence_notes(licences: dict[str, int]) -> list[str]:
    if not licences:
        return []
    counts = "; ".join(f"{k}: {v} records" for k, v in licences.items())
    notes = [f"Licences of the training data: {counts}. Check them before redistributing this model."]
    if "unknown" in licences:
        notes.append(
            f"**{licences['unknown']} training records have no stated licence** (set `license:` on their source); "
            "clear their terms before publishing this model."
        )
    return notes


def _evaluation(report: dict) -> str:
    results = report.get("results", {})
    if not results:
        return "No evaluation report in the run (run `medtune eval`)."
    names = [n for n in ("base", "finetuned") if n in results]
    metrics = [m for m in results[names[0]] if all(isinstance(results[n].get(m), (int, float)) for n in names)]
    table = _table(["metric", *names], [[m, *(f"{results[n][m]:.4f}" for n in names)] for m in metrics])
    return table + f"\n\n{report.get('n_eval_records', '?')} held-out records; base precision: {report.get('base_precision', '?')}."


def _export_checks(verify: dict) -> str:
    rows = [
        [t, f"{e['token_agreement']:.4f}", e["greedy_identical"], f"{e['perplexity_change']:+.4%}", e["size_mb"]]
        for t, e in verify["gguf"].items()
    ]
    return _table(["GGUF", "token agreement", "greedy identical", "perplexity change", "size (MB)"], rows)


def _merge_check(m: dict) -> str:
    return f"Merged ({m['dtype']}) vs base+adapter: max |Δlogit| {m['max_abs_logit_diff']:.2e} (tolerance {m['tolerance']:.0e})."


def _file_entry(v) -> str:
    return v["path"] if isinstance(v, dict) and "path" in v else ", ".join(v) if isinstance(v, dict) else str(v)


def _upstream(cfg: RunConfig) -> str | None:
    from medtune.core.models import BUILTIN_MODELS

    if cfg.model.name in BUILTIN_MODELS:
        return BUILTIN_MODELS[cfg.model.name][2]
    return cfg.model.name if cfg.model.name.count("/") == 1 and not Path(cfg.model.name).exists() else None


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}
