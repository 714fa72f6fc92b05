"""Ollama: a Modelfile next to the GGUF, its TEMPLATE derived from the tokenizer's own chat template.

The chat template renders a probe conversation and is cut at the message contents into per-role
prefixes and suffixes (no per-family template table); ``go_template`` writes those as a Go
text/template, and the derivation is checked by rendering the probe back.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from medtune.core.atomic import write_text
from medtune.core.config import RunConfig
from medtune.export import ExportError
from medtune.export.card import disclaimer
from medtune.export.merge import plain_repeat_penalty, stop_ids

log = logging.getLogger(__name__)


@dataclass
class ChatFormat:
    """A chat template cut into per-role wrappers: prefix + content + suffix for each role."""

    system: tuple[str, str]
    user: tuple[str, str]
    assistant: tuple[str, str]
    generation: str
    """What opens the assistant's turn at generation time."""
    bos: str = ""
    """Text before the first message (a BOS the template writes itself)."""

    def render(self, messages: list[dict]) -> str:
        """The same text the Ollama TEMPLATE below produces (used to check the derivation)."""
        out = self.bos
        for m in messages:
            pre, suf = getattr(self, m["role"])
            out += pre + m["content"] + suf
        return out + self.generation


PROBE = {"system": "\x01S\x01", "user": "\x01U\x01", "assistant": "\x01A\x01", "user2": "\x01V\x01"}


def chat_format(tokenizer) -> ChatFormat:
    """Derive per-role wrappers from the tokenizer's chat template.

    The template renders a probe conversation (system, user, assistant, user) whose contents
    are unique markers; the text between markers is "suffix of one turn + prefix of the next".
    A turn's suffix ends just after the end-of-turn token (a stop token, plus the whitespace
    after it); for templates without one, the whole gap is the next turn's prefix.
    """
    p = PROBE
    conv = [
        {"role": "system", "content": p["system"]},
        {"role": "user", "content": p["user"]},
        {"role": "assistant", "content": p["assistant"]},
        {"role": "user", "content": p["user2"]},
    ]
    text = tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    cut = [text.index(p[k]) for k in ("system", "user", "assistant", "user2")]
    head = text[: cut[0]]
    gaps = [text[cut[i] + len(list(p.values())[i]) : cut[i + 1]] for i in range(3)]
    tail = text[cut[3] + len(p["user2"]) :]
    end_tokens = [tokenizer.convert_ids_to_tokens(i) for i in stop_ids(tokenizer)]

    def split(gap: str) -> tuple[str, str]:
        best = -1
        for tok in end_tokens:
            at = gap.find(tok)
            if at >= 0:
                best = max(best, at + len(tok))
        if best < 0:
            return "", gap
        end = best
        while end < len(gap) and gap[end] in " \n":
            end += 1
        return gap[:end], gap[end:]

    sys_suffix, user_prefix = split(gaps[0])
    user_suffix, asst_prefix = split(gaps[1])
    asst_suffix, user_prefix2 = split(gaps[2])
    if user_prefix2 != user_prefix or not tail.startswith(user_suffix):
        raise ExportError(
            f"the chat template is not turn-by-turn (user turns render differently); write the Modelfile TEMPLATE by hand: {text!r}"
        )
    bos, sys_prefix = _split_bos(head, user_prefix, tokenizer)
    fmt = ChatFormat((sys_prefix, sys_suffix), (user_prefix, user_suffix), (asst_prefix, asst_suffix), tail[len(user_suffix) :], bos)
    if fmt.render(conv) != text:
        raise ExportError("could not derive a turn-by-turn template from the tokenizer's chat template")
    return fmt


def _split_bos(head: str, user_prefix: str, tokenizer) -> tuple[str, str]:
    """Separate a BOS the template writes once at the start from the system turn's own prefix.

    When the BOS token also opens every turn (SmolLM2's ``<|im_start|>``), it stays in the prefix.
    """
    bos = tokenizer.bos_token or ""
    if bos and head.startswith(bos) and not user_prefix.startswith(bos):
        return bos, head[len(bos) :]
    return "", head


def go_template(fmt: ChatFormat) -> str:
    """The Ollama (Go text/template) TEMPLATE for a ChatFormat; renders the same text as ``fmt.render``."""

    def lit(s: str) -> str:
        return s.replace("{{", '{{ "{{" }}')

    return (
        lit(fmt.bos)
        + "{{ if .System }}" + lit(fmt.system[0]) + "{{ .System }}" + lit(fmt.system[1]) + "{{ end }}"
        + "{{ range .Messages }}"
        + '{{ if eq .Role "user" }}' + lit(fmt.user[0]) + "{{ .Content }}" + lit(fmt.user[1])
        + '{{ else if eq .Role "assistant" }}' + lit(fmt.assistant[0]) + "{{ .Content }}" + lit(fmt.assistant[1])
        + "{{ end }}{{ end }}"
        + lit(fmt.generation)
    )


def write_modelfile(merged: Path, gguf: str, cfg: RunConfig, target: Path) -> dict:
    """Modelfile next to the GGUF: TEMPLATE and stop tokens from the tokenizer, SYSTEM and PARAMETERs from the run."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged)
    fmt = chat_format(tokenizer)
    stops = [tokenizer.convert_ids_to_tokens(i) for i in stop_ids(tokenizer)]
    gc = cfg.generation
    target.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(gguf, target.parent)
    lines = [
        f"# Ollama Modelfile written by medtune export for run '{cfg.name}'. Build: ollama create {cfg.name} -f Modelfile",
        f"# Medical disclaimer: {' '.join(disclaimer(cfg).split())}",
        "# medtune's guardrails are not part of this model; put `medtune serve` in front, or apply them in your application.",
        f"FROM {rel}",
        f'TEMPLATE """{go_template(fmt)}"""',
        f'SYSTEM """{cfg.data.system_prompt}"""',
        *(f'PARAMETER stop "{s}"' for s in stops),
        f"PARAMETER temperature {gc.temperature}",
        f"PARAMETER top_p {gc.top_p}",
        *([f"# Ollama has no n-gram blocking (generation.no_repeat_ngram_size {gc.no_repeat_ngram_size}): "
            "its repeat penalty stands in against loops"] if gc.no_repeat_ngram_size else []),
        f"PARAMETER repeat_penalty {plain_repeat_penalty(gc)}",
        f"PARAMETER num_predict {gc.max_new_tokens}",
    ]
    write_text(target, "\n".join(lines) + "\n")
    log.info("Modelfile → %s (FROM %s)", target, rel)
    return {"path": str(target), "from": rel, "stop": stops}
