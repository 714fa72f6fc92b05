"""The train stage: a PEFT LoRA/QLoRA adapter trained by TRL's SFTTrainer (or, ``train.method: dpo``,
its DPOTrainer on preference pairs: ``dpo.py``).

medtune configures the trainer; it does not own a training loop. SFT loss is on the assistant's
answer only (prompt–completion examples, see ``data.templates``). Checkpoints go to
``checkpoints/`` so a killed run resumes with ``--resume``; the final adapter, tokenizer,
history and curves go into the run directory.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from medtune.core.assets import sha256_file
from medtune.core.atomic import atomic_dir, atomic_path, write_json
from medtune.core.config import RunConfig
from medtune.core.rundir import RunDir
from medtune.data.records import read_jsonl
from medtune.data.templates import data_examples

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    train_loss: float | None
    steps: int
    seconds: float
    examples: int
    dropped_examples: int


def peft_config(cfg: RunConfig, model=None):
    from peft import LoraConfig

    targets = cfg.lora.target_modules
    if cfg.lora.layers is not None and targets == "all-linear":
        targets = linear_module_names(model)  # PEFT wants explicit names with layers_to_transform
    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=targets,
        use_rslora=cfg.lora.use_rslora,
        layers_to_transform=cfg.lora.layers,
        task_type="CAUSAL_LM",
    )


def linear_module_names(model) -> list[str]:
    """Leaf names of the decoder's linear layers (plain or bitsandbytes), the output head excluded."""
    import torch

    names = set()
    for full_name, module in model.named_modules():
        is_linear = isinstance(module, torch.nn.Linear) or type(module).__name__ in {"Linear4bit", "Linear8bitLt"}
        if is_linear and ".layers." in full_name:
            names.add(full_name.rsplit(".", 1)[-1])
    return sorted(names)


def sft_config(cfg: RunConfig, run: RunDir, has_eval: bool):
    from trl import SFTConfig

    t = cfg.train
    return SFTConfig(
        **common_args(cfg, run, has_eval),
        completion_only_loss=True,
        packing=t.packing,
        padding_free=t.packing,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
    )


def common_args(cfg: RunConfig, run: RunDir, has_eval: bool) -> dict:
    """The trainer arguments SFT and DPO share (``transformers.TrainingArguments`` plus ``max_length``)."""
    import torch

    t = cfg.train
    on_gpu = torch.cuda.is_available()
    dtype = cfg.model.resolved_dtype()
    # transformers' TensorBoard callback takes its directory from this variable only; without it, a
    # trainer that logs before it trains (evaluate() first) writes to ./runs/<date>_<host> in the cwd
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run.logs / "tensorboard")
    return dict(
        output_dir=str(run.checkpoints),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        learning_rate=t.learning_rate,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        max_length=t.max_seq_length,
        warmup_steps=t.warmup_ratio,  # transformers accepts a float ratio here
        lr_scheduler_type=t.lr_scheduler,
        weight_decay=t.weight_decay,
        optim=t.optim,
        gradient_checkpointing=t.gradient_checkpointing,
        logging_steps=t.logging_steps,
        **schedule_args(t, has_eval),
        save_total_limit=t.save_total_limit,
        report_to=t.report_to,
        seed=t.seed,
        data_seed=t.seed,
        bf16=dtype == "bfloat16",
        fp16=dtype == "float16" and on_gpu,
        use_cpu=not on_gpu,
        dataloader_num_workers=0,
        disable_tqdm=False,
        ddp_find_unused_parameters=False,  # every LoRA weight is used in every step; the search costs a pass
    )


def schedule_args(t, has_eval: bool) -> dict:
    """Evaluation and checkpoint schedule. With ``keep_best`` every evaluation also saves a checkpoint
    (transformers needs the two schedules equal) and the trainer reloads the best one at the end, so
    the saved adapter is the best by ``best_metric``, not the last."""
    evaluate = t.schedule() if has_eval else "no"
    args = dict(
        eval_strategy=evaluate,
        eval_steps=t.eval_steps,
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500,
    )
    if t.keep_best and evaluate != "no":
        args.update(save_strategy=evaluate, save_steps=t.eval_steps or 500, load_best_model_at_end=True,
                    metric_for_best_model=t.best_metric)
    return args


def check_trackers(report_to: list[str]) -> None:
    """mlflow and wandb are optional packages: say so before training rather than deep inside it."""
    import importlib.util

    for name in report_to:
        if name != "tensorboard" and importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"train.report_to: '{name}' needs the '{name}' package (pip install {name}), "
                                      "or drop it from report_to")


def train(cfg: RunConfig, run: RunDir, resume: bool = False) -> TrainResult:
    """Train the adapter on ``run.data/train.jsonl`` (written by the prepare stage)."""
    import torch

    from medtune.core.models import load_base

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    train_records = read_jsonl(run.data / "train.jsonl")
    eval_records = read_jsonl(run.data / "eval.jsonl") if (run.data / "eval.jsonl").exists() else []
    check_trackers(cfg.train.report_to)
    resolved, tokenizer, model = load_base(cfg.model)
    lora = peft_config(cfg, model)
    if cfg.lora.init_adapter:  # keep training a saved adapter (multi-stage 'continue'); its own LoRA config applies
        from peft import PeftModel

        model, lora = PeftModel.from_pretrained(model, cfg.lora.init_adapter, is_trainable=True), None
    trainer, train_ds = build_trainer(cfg, run, model, tokenizer, lora, train_records, eval_records)
    keep_adapter_fp32(trainer.model)
    if cfg.train.eval_generate and eval_records and trainer.args.eval_strategy != "no":  # eval_rougeL at each evaluation
        from medtune.training.generation_metrics import GenerationMetrics

        trainer.add_callback(GenerationMetrics(trainer, eval_records[: cfg.train.eval_generate], cfg))
    # TRL drops examples whose answer was truncated away entirely; say so rather than lose them quietly.
    dropped = len(train_ds) - examples_in(trainer.train_dataset)
    if dropped and trainer.is_world_process_zero():
        log.warning("%d training examples had no answer tokens left within max_seq_length=%d and were dropped",
                    dropped, cfg.train.max_seq_length)
    checkpoint = last_checkpoint(run.checkpoints) if resume else None
    if resume and checkpoint is None:
        log.warning("no checkpoint in %s; starting from scratch", run.checkpoints)
    start = time.time()
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.time() - start
    main = trainer.is_world_process_zero()  # under `accelerate launch` (DDP) one process writes the run directory
    if cfg.train.method == "dpo":
        from medtune.training.dpo import drop_reference

        drop_reference(trainer.model)
    with atomic_dir(run.adapter, commit=main) as staging:  # the adapter appears whole, or the old one stays
        trainer.save_model(str(staging))  # writes on the main process only
        if main:
            tokenizer.save_pretrained(str(staging))
    result = TrainResult(output.training_loss, trainer.state.global_step, seconds, examples_in(trainer.train_dataset), dropped)
    if not main:
        return result
    history = trainer.state.log_history
    run.logs.mkdir(parents=True, exist_ok=True)
    write_json(run.logs / "history.json", history, indent=1)
    plot_curves(history, run.logs / "curves.png")
    run.update_manifest(
        seed=cfg.train.seed,
        base_model=resolved.identity,
        data={name: sha256_file(run.data / name) for name in ("train.jsonl", "eval.jsonl") if (run.data / name).exists()},
        train={**result.__dict__, "resumed_from": str(checkpoint) if checkpoint else None,
               "trainable_parameters": _trainable(trainer.model),
               "processes": trainer.args.world_size, "init_adapter": cfg.lora.init_adapter,
               "best_checkpoint": trainer.state.best_model_checkpoint, "best_metric": trainer.state.best_metric,
               "method": cfg.train.method, "safety_flagged": _safety_flagged(run)},
        adapter={"sha256": sha256_file(run.adapter / "adapter_model.safetensors")},
    )
    return result


def build_trainer(cfg: RunConfig, run: RunDir, model, tokenizer, lora, train_records, eval_records):
    """``(trainer, training dataset)`` for ``train.method``: TRL's SFTTrainer on prompt–completion examples, or
    DPOTrainer on prompt/chosen/rejected pairs (``dpo.py``). ``eval.safety_during_training`` adds the
    model-alone safety check (``safety_watch.py``)."""
    from trl import SFTTrainer

    from medtune.training.checkpoints import trainer_class
    from medtune.training.safety_watch import safety_callbacks

    callbacks = safety_callbacks(cfg, run, tokenizer)
    if cfg.train.method == "dpo":
        from medtune.training.dpo import dpo_trainer

        return dpo_trainer(cfg, run, model, tokenizer, lora, train_records, eval_records, callbacks)
    train_ds = data_examples(train_records, cfg.data)
    eval_ds = data_examples(eval_records, cfg.data) if eval_records else None
    cls = trainer_class(SFTTrainer, chunked_head=cfg.train.loss == "chunked")
    trainer = cls(model=model, args=sft_config(cfg, run, eval_ds is not None), train_dataset=train_ds,
                  eval_dataset=eval_ds, processing_class=tokenizer, peft_config=lora, callbacks=callbacks)
    return trainer, train_ds


def _safety_flagged(run: RunDir) -> bool | None:
    """Whether model-alone safety fell below the base while training (None: not measured)."""
    from medtune.evaluate.safety import DURING_TRAINING_FILE

    path = run.logs / DURING_TRAINING_FILE
    return json.loads(path.read_text())["flagged"] if path.exists() else None


def examples_in(dataset) -> int:
    """Examples in a prepared training set: a packed row holds several (their lengths are in ``seq_lengths``)."""
    if "seq_lengths" in dataset.column_names:
        return sum(len(lengths) for lengths in dataset["seq_lengths"])
    return len(dataset)


def process_state():
    """This process's place among the ones ``accelerate launch`` started (``accelerate.PartialState``).

    A plain ``python -m medtune`` run gets a single-process state (distributed type ``NO``): no process
    group is created and nothing changes for the trainer, which builds its own state anyway. Under
    ``accelerate launch`` it joins the same process group the trainer joins (gloo on a CPU, as
    ``SFTConfig(use_cpu=True)`` asks for)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def main_process_first():
    """Under ``accelerate launch`` (several processes), the main process runs the block first and the others
    wait for it (e.g. it prepares the data, they then read it); in a plain run the block just runs."""
    return process_state().main_process_first()


def is_main_process() -> bool:
    return process_state().is_main_process


def keep_adapter_fp32(model) -> None:
    """Keep the LoRA weights in fp32 (PEFT's default). TRL casts QLoRA adapters to bf16, but a resumed run
    reloads them through PEFT in fp32, so without this a killed-and-resumed run would drift from an
    uninterrupted one. The optimizer does not exist yet, so it is built on the fp32 weights."""
    import torch

    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()


def _trainable(model) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total}


def last_checkpoint(directory: Path) -> Path | None:
    """The newest *complete* checkpoint: a process killed while saving leaves a partial one behind."""
    if not directory.is_dir():
        return None
    complete = [
        d for d in directory.glob("checkpoint-*")
        if d.name.split("-")[-1].isdigit() and (d / "trainer_state.json").exists() and (d / "optimizer.pt").exists()
    ]
    return max(complete, key=lambda d: int(d.name.split("-")[-1]), default=None)


def plot_curves(history: list[dict], path: Path) -> None:
    """Training/eval loss, token accuracy and the generation metrics (eval_rougeL...) against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {
        "train loss": [(h["step"], h["loss"]) for h in history if "loss" in h],
        "eval loss": [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h],
        "train token accuracy": [(h["step"], h["mean_token_accuracy"]) for h in history if "mean_token_accuracy" in h],
        "eval token accuracy": [(h["step"], h["eval_mean_token_accuracy"]) for h in history if "eval_mean_token_accuracy" in h],
        "eval ROUGE-L": [(h["step"], h["eval_rougeL"]) for h in history if "eval_rougeL" in h],
        "eval BERTScore F1": [(h["step"], h["eval_bertscore_f1"]) for h in history if "eval_bertscore_f1" in h],
    }
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, points in series.items():
        if points:
            ax = ax_loss if "loss" in name else ax_acc
            ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=name)
    for ax, title in ((ax_loss, "loss"), (ax_acc, "token accuracy, ROUGE-L")):
        ax.set_xlabel("step")
        ax.set_title(title)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
