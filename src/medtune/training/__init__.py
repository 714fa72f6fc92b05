"""Training: the train stage (TRL SFTTrainer + PEFT), the pipeline, multi-stage runs, sweeps, dry-run plans."""
