"""``data``: where records come from and how they are cleaned, mixed and split."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from medtune.core.config.base import Section

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful, friendly medical information assistant. Give clear, accurate, general health "
    "information in plain language. You do not diagnose or prescribe. In an emergency, tell the person "
    "to call their local emergency number first. Encourage people to see a doctor or pharmacist for "
    "personal advice."
)


class SourceConfig(Section):
    kind: str = "generic"
    """Adapter name (generic, chatdoctor, medquad, medqa, medmcqa, pubmedqa, reasoning, notechat, flashcards, preference,
    builtin, replay)."""
    path: str
    """Local file/dir, Hugging Face dataset id, 'starter' for the built-in starter set; for replay, an earlier run
    dir, its data/ dir or a train.jsonl."""
    fields: dict[str, str] = {}
    """Field mapping for generic files: question/answer/id/reasoning -> column name."""
    options: dict[str, Any] = {}
    """Adapter-specific options (e.g. strip_boilerplate, answer_format, split)."""
    count: int | None = Field(None, gt=0)
    """Records this source puts into the mixture: a seeded sample drawn after cleaning (every record when it has fewer, unless replace)."""
    weight: float | None = Field(None, gt=0)
    """Relative share in the mixture: weighted sources split data.total minus the other sources' records, or,
    without data.total, make the largest mixture in these proportions that repeats no record."""
    fraction: float | None = Field(None, gt=0, le=1)
    """Seeded sample of this share of the records loaded (0 < f <= 1); for replay, the share of the earlier stage's training mixture."""
    replace: bool = False
    """Let count or weight ask for more records than the source has: every record repeats, then a seeded sample
    for the rest (copies get ids '<id>#2'...)."""
    license: str | None = None
    """Licence tag override."""
    where: dict[str, list[str]] = {}
    """Keep only the records whose field holds one of the values (a record field such as ``source``, or a key of
    its ``meta``, e.g. a preference file's ``category``), before cleaning and the mixture; the rest are counted in the
    data card (``skipped.left_out``, as an adapter's filter option's are), never dropped unseen. Loading one file as
    several sources with disjoint ``where`` gives each part its own share (``count``/``weight``)."""

    @model_validator(mode="after")
    def _one_share(self) -> SourceConfig:
        asked = [name for name in ("count", "weight", "fraction") if getattr(self, name) is not None]
        if len(asked) > 1:
            raise ValueError(f"give one of count, weight or fraction, not {' and '.join(asked)}")
        return self


class DataConfig(Section):
    sources: list[SourceConfig] = [SourceConfig(kind="builtin", path="starter")]
    """Where records come from."""
    total: int | None = Field(None, gt=0)
    """Total records in the mixture: each weighted source gets round(left * w / sum(w)), left = total minus the
    unweighted sources' records; more than a source has is an error unless it sets replace."""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    """Persona system prompt put before every conversation (training, eval, ask)."""
    template: Literal["chat", "alpaca", "reasoning", "rag"] = "chat"
    """'chat' = the model's own chat template; 'alpaca' = ### System/Instruction/Response; 'reasoning' = chat with <think>;
    'rag' = chat with numbered passages (gold + distractors, sometimes distractors only) in the prompt, answers citing them."""
    rag_not_found_share: float = Field(0.2, ge=0, le=1)
    """rag template: share of examples whose passages are distractors only and whose target is the not-found sentence.
    A small model says it at about this rate whether or not the passages answer; 0 leaves "not found" to the
    retriever's threshold (retrieval.threshold)."""
    eval_fraction: float = Field(0.1, ge=0, lt=1)
    """Share of records held out for evaluation (stable hash of the record id)."""
    eval_max: int | None = Field(None, gt=0)
    """Cap on held-out records."""
    split_by: Literal["record", "document", "source"] = "document"
    """What the held-out split keeps together: each record alone, the records of one document (MedQuAD's
    several questions per document; records without a document are their own), or whole sources."""
    holdout_source: str | None = None
    """Hold out this whole source (a Record.source, or a MedQuAD collection such as GARD) and nothing else:
    eval_fraction is then ignored, and held-out records beyond eval_max are dropped, never trained on."""
    on_error: Literal["raise", "skip"] = "raise"
    """Bad rows: stop with an error naming file/line/field, or skip and count them in the data card."""
    min_answer_chars: int = Field(0, ge=0)
    """Drop records whose answer is shorter."""
    max_answer_chars: int | None = Field(None, gt=0)
    """Drop records whose answer is longer."""
    min_question_chars: int = Field(1, ge=0)
    """Drop records whose question is shorter."""
    max_tokens: int | None = Field(None, gt=0)
    """Drop records longer than this many tokens (question + reasoning + answer, counted with the base model's tokenizer)."""
    language: str | None = None
    """Keep only records that look like this language ('en'; a cheap heuristic), None = no check."""
    scrub_pii: bool = False
    """Replace emails, phone numbers, URLs and names in greetings/sign-offs with placeholders."""
    dedupe: bool = True
    """Drop exact duplicates (normalised hash), within and across sources."""
    near_dedupe: bool = True
    """Also drop near-duplicates (MinHash LSH)."""
    dedupe_threshold: float = Field(0.85, gt=0, le=1)
    """Jaccard similarity above which two records are near-duplicates."""
    boilerplate_filter: bool = False
    """Drop templated answers (mostly sentences that open answers in many documents: a collection's
    boilerplate) beyond boilerplate_cap per template, and link-list answers (see medtune.data.boilerplate)."""
    boilerplate_min_documents: int = Field(20, gt=1)
    """A sentence opening (its first six words) is a template when this many documents use it."""
    boilerplate_max_share: float = Field(0.5, gt=0, le=1)
    """An answer whose words are at least this share template sentences is templated."""
    boilerplate_cap: int = Field(3, ge=0)
    """Templated answers kept per template (a stable sample; 0 = none)."""
    decontaminate: list[str] = []
    """Benchmark files (MCQ test sets) whose questions must not appear in training; the run's own
    held-out questions are always checked."""
    decontaminate_ngram: int = Field(13, gt=0)
    """Word n-gram length for the overlap test."""
    seed: int = 42
    """Seed for sampling and the split."""

    @model_validator(mode="after")
    def _total_needs_weights(self) -> DataConfig:
        if self.total is not None and not any(src.weight is not None for src in self.sources):
            raise ValueError("total needs at least one source with a weight (it is shared among the weighted sources)")
        return self
