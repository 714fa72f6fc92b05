"""Trainer checkpoints that appear whole or not at all.

transformers writes ``checkpoint-N/`` file by file (weights, optimizer, scheduler, RNG state, trainer
state) straight under its final name, so a process killed mid-save leaves a half-written checkpoint
that ``--resume`` may pick. ``AtomicCheckpoints`` lets transformers' own code write each checkpoint under
``checkpoints/.partial/`` and then moves it into place in one rename (``core.atomic.replace_dir``);
older checkpoints are rotated only after the new one is in place.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from transformers.trainer_utils import rotate_checkpoints

from medtune.core.atomic import disk_full, no_space, replace_dir

STAGING = ".partial"


def trainer_class(base: type, chunked_head: bool = False) -> type:
    """A TRL trainer class (``SFTTrainer``, ``DPOTrainer``) with atomic checkpoints and, if asked, the chunked
    LM head of ``loss.py`` (``train.loss: chunked``)."""
    from medtune.training.loss import ChunkedHeadMixin

    mixins = (AtomicCheckpoints, ChunkedHeadMixin) if chunked_head else (AtomicCheckpoints,)
    return type(base.__name__, (*mixins, base), {"__module__": __name__})


class AtomicCheckpoints:
    """Put before a TRL trainer class: checkpoints that appear whole (see the module docstring)."""

    _staging = False

    def _get_output_dir(self, trial) -> str:
        root = super()._get_output_dir(trial)
        return os.path.join(root, STAGING) if self._staging else root

    def _save_checkpoint(self, model, trial) -> None:
        root = Path(super()._get_output_dir(trial))
        staging_root, name = root / STAGING, f"checkpoint-{self.state.global_step}"
        if self.args.should_save:
            shutil.rmtree(staging_root, ignore_errors=True)  # left by a killed save
        self.accelerator.wait_for_everyone()
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)
        except Exception as exc:  # torch.save reports a full disk as a RuntimeError
            if isinstance(exc, OSError) or not disk_full(root):
                raise
            raise no_space(staging_root / name) from exc
        finally:
            self._staging = False
        self.accelerator.wait_for_everyone()  # under DDP every process writes its own RNG state into it
        if self.args.should_save:
            staged, final = staging_root / name, root / name
            best = self.state.best_model_checkpoint
            if best is not None and Path(best) == staged:  # transformers named the staged folder
                self.state.best_model_checkpoint = str(final)
                self.state.save_to_json(str(staged / "trainer_state.json"))
            replace_dir(staged, final)
            shutil.rmtree(staging_root, ignore_errors=True)
            rotate_checkpoints(str(root), self.args.save_total_limit, self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()
