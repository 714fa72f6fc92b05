"""Opening a GGUF in llama.cpp (llama-cpp-python): the one place medtune does it.

On CPUs with Intel AMX, llama.cpp's CPU backend puts quantized weights (q8_0, Q4_1, ...) in an "extra buffer type"
(its AMX and repacked-weight kernels). With llama-cpp-python 0.3.36 built on such a machine, decoding any prompt of
more than one token through those buffers ends the process with a segmentation fault (a 2-core Intel Xeon with
AMX_INT8, 2026-12-06: the built-in Q4_1 file and an exported q8_0 both crash, f16 does not; with the extra buffer
types off all three decode). So on an AMX CPU the extra buffer types are turned off: llama.cpp then runs the plain
CPU kernels, slower on prompt processing but correct. llama-cpp-python's ``Llama`` has no argument for llama.cpp's
``use_extra_bufts`` model parameter, so its default-parameter factory is wrapped while the model loads.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def cpu_has_amx() -> bool:
    """Whether this CPU has Intel AMX tiles (what llama.cpp's AMX buffer type runs on)."""
    import torch

    caps = torch.cpu.get_capabilities()
    return bool(caps.get("amx_tile") or caps.get("amx_int8"))


@contextlib.contextmanager
def _without_extra_buffers():
    import llama_cpp.llama as module

    factory = module.llama_cpp.llama_model_default_params

    def params():
        p = factory()
        p.use_extra_bufts = False
        return p

    module.llama_cpp.llama_model_default_params = params
    try:
        yield
    finally:
        module.llama_cpp.llama_model_default_params = factory


def open_gguf(path: str | Path, n_ctx: int, n_threads: int | None = None, extra_buffers: bool | None = None, **kwargs):
    """A ``llama_cpp.Llama`` on ``path`` (quiet). ``extra_buffers``: llama.cpp's AMX / repacked-weight buffer types;
    None = on unless the CPU has AMX (see the module docstring)."""
    from llama_cpp import Llama

    if extra_buffers is None:
        extra_buffers = not cpu_has_amx()
    if not extra_buffers:
        log.info("llama.cpp: extra CPU buffer types (AMX, repacked weights) off for %s", Path(path).name)
    with contextlib.nullcontext() if extra_buffers else _without_extra_buffers():
        return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count() or 1, verbose=False, **kwargs)
