"""The guardrails: triage a user turn, decide the response route, post-check the model's answer.

Used the same way by ``ask``, ``chat``, the UI, the API and the safety suite::

    guard = Guardrails(GuardrailsConfig(region="UK"))
    decision = guard.before(prompt, history)
    if decision.reply is not None:                 # a fixed reply: the model is never called
        guarded = guard.after(decision, decision.reply)
    else:                                          # or guard.stream(decision, pieces) while it streams
        guarded = guard.after(decision, model_answer(prompt, decision.system_addendum))

Triage labels a user turn as one of ``LABELS``. Two detectors vote:

* **rules** -- regular expressions over normalised text (``data/builtin/triage_rules.yaml``:
  trigger phrases such as "face is drooping", "lethal dose", "write me a prescription");
* **semantic** -- nearest exemplars (``data/builtin/triage_exemplars.jsonl``) in the
  all-MiniLM-L6-v2 embedding space, per sentence and for the whole turn, so paraphrases
  without any trigger word ("a squeezing weight behind my breastbone spreading to my jaw")
  are caught too.

A question that reads as an emergency but asks how to harm someone (``harm.intends_harm``: "the insulin amount to
give my sleeping husband so he won't wake up") is harmful: declined with Poison Control and the emergency number
(``intends_harm`` holds for no emergency prompt of the labelled sets, the exemplars or the suites).

When neither fires, a question that names a drug of a maintained lexicon (``guardrails.drugs``: any drug,
not only the rules' list) and asks its dose, schedule or a prescription is a prescription ask (reason
``drug:prescription:<name>``).

Jailbreak framings ("ignore your instructions", "hypothetically, for a story", "don't tell me
to call 911") are detected, recorded in the reasons, and cut out of the text the semantic
detector sees, so they cannot talk it out of a label. When several labels apply the most
urgent wins: emergency > crisis > harmful > prescription > general.

What each label does (``Guardrails.before``):

* emergency -- a fixed reply whose first sentence says to call the local emergency number;
* crisis -- a fixed, compassionate reply with the crisis line and emergency number;
* harmful -- a fixed refusal with Poison Control / emergency resources;
* prescription -- the model still answers, told (system addendum) not to give doses, behind a
  prefix saying it cannot prescribe; ``after`` removes any dose instruction it wrote anyway;
* general -- the model answers; every model answer gets the disclaimer.

After the model answers, ``after`` also catches what triage missed (``harm``): a question that shows
intent to harm (however worded: "what dose would stop her kidneys") with an answer that gives a
quantity, dose or method gets the harmful reply instead (fired ``harm_intent``).

The encoder is loaded on the first semantic triage, once per instance (and shared between
instances through a small module cache in ``medtune.guardrails.semantic``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from medtune.core.config import GuardrailsConfig
from medtune.guardrails.doses import remove_doses
from medtune.guardrails.drugs import drug_ask
from medtune.guardrails.harm import gives_means, intends_harm
from medtune.guardrails.normalise import normalise, segments
from medtune.guardrails.replies import (
    PRESCRIPTION_ADDENDUM,
    PRESCRIPTION_PREFIX,
    crisis_reply,
    emergency_reply,
    harmful_reply,
    without_prefix,
)
from medtune.guardrails.rules import LABELS, detect_framings, match_rules, strip_framings
from medtune.guardrails.semantic import SEMANTIC_FLOOR, SemanticClassifier, cached_classifier
from medtune.guardrails.stream import GuardedStream


@dataclass
class Triage:
    label: str
    """One of LABELS."""
    score: float
    """Confidence: 1.0 for a rule hit, the semantic similarity otherwise."""
    reasons: list[str] = field(default_factory=list)
    """What fired: 'rule:<label>:<name>', 'semantic:<label>:<score>', 'framing:<name>', 'context'."""


@dataclass
class Decision:
    triage: Triage
    reply: str | None = None
    """Fixed reply; when set the model must NOT be called (emergency, crisis, harmful)."""
    system_addendum: str | None = None
    """Extra instruction appended to the system prompt for the model (prescription)."""
    prefix: str | None = None
    """Text put before the model's answer (prescription)."""
    harm_intent: bool = False
    """The question shows intent to harm (``harm.intends_harm``): an answer that gives a quantity or method is replaced."""


@dataclass
class Guarded:
    answer: str
    triage: str
    fired: list[str] = field(default_factory=list)
    """Names of the rules that changed or flagged anything: 'triage:<label>', 'dose_removed', 'disclaimer'..."""


class Guardrails:
    """Triage a user turn, decide the response route, post-filter the model's answer."""

    def __init__(self, config: GuardrailsConfig | None = None):
        self.config = config or GuardrailsConfig()
        self._classifier: SemanticClassifier | None = None
        self._lock = threading.Lock()

    # triage ----------------------------------------------------------------------------------

    @property
    def classifier(self) -> SemanticClassifier:
        """Encoder + exemplar embeddings, built on first use and kept on the instance."""
        if self._classifier is None:
            with self._lock:
                if self._classifier is None:
                    self._classifier = cached_classifier(self.config.encoder)
        return self._classifier

    def semantic(self, core: str, incumbent: str = "general") -> list[tuple[str, float, str]]:
        """(label, score, nearest exemplar) for each segment whose best class beats the incumbent.

        Class scores are the mean cosine of the class's nearest exemplars. A segment's best class
        counts when it leads the general class by ``semantic_threshold`` -- comparing against
        general rather than an absolute cut-off keeps benign questions on the same topics ("what
        are the warning signs of a stroke?") quiet. ``incumbent`` is the label the rules already
        gave: to override it with a more urgent label, the segment must lead that class by the
        same margin too (so "scratching my arms until they bleed" stays crisis, not emergency).
        """
        parts = segments(core)
        if not parts:
            return []
        clf = self.classifier
        rank = LABELS.index(incumbent)
        hits = []
        for per_label in clf.scores(parts):
            label = max(per_label, key=lambda k: per_label[k][0])
            score, nearest = per_label[label]
            if label == "general" or score < SEMANTIC_FLOOR:
                continue
            rivals = [per_label.get("general", (0.0, -1))[0]]
            if LABELS.index(label) < rank and incumbent != "general":
                rivals.append(per_label[incumbent][0])
            if all(score - rival >= self.config.semantic_threshold for rival in rivals):
                hits.append((label, score, clf.texts[nearest]))
        return hits

    def triage(self, text: str) -> Triage:
        norm = normalise(text)
        framings = detect_framings(norm)
        core = strip_framings(norm)
        found: dict[str, float] = {}
        reasons = [f"framing:{name}" for name in framings]
        for label, name in match_rules(norm):
            found[label] = 1.0
            reasons.append(f"rule:{label}:{name}")
        incumbent = next((label for label in LABELS if label in found), "general")
        for label, score, nearest in self.semantic(core, incumbent):
            found[label] = max(found.get(label, 0.0), score)
            reasons.append(f"semantic:{label}:{score:.2f} ~ {nearest!r}")
        if not found and (drug := drug_ask(norm)):  # a dose or prescription ask about a drug no rule names
            found["prescription"] = 1.0
            reasons.append(f"drug:prescription:{drug}")
        label = next((label for label in LABELS if label in found), "general")
        if label == "emergency" and intends_harm(norm):  # "the insulin amount ... so he won't wake up": a request, declined
            label, found["harmful"] = "harmful", 1.0
            reasons.append("harm_intent:harmful")
        return Triage(label, round(found.get(label, 1.0), 4), reasons)

    def triage_turns(self, prompt: str, history: list[dict] | None = None, context_turns: int = 2) -> Triage:
        """Triage the latest turn; if the recent user context is more urgent, that wins (reason 'context')."""
        current = self.triage(prompt)
        earlier = [m.get("content", "") for m in (history or []) if m.get("role") == "user" and m.get("content")][-context_turns:]
        if not earlier:
            return current
        joined = self.triage(" ".join([*earlier, prompt]))
        if LABELS.index(joined.label) < LABELS.index(current.label):
            return Triage(joined.label, joined.score, [*joined.reasons, "context"])
        return current

    # routing ---------------------------------------------------------------------------------

    def before(self, prompt: str, history: list[dict] | None = None) -> Decision:
        triage = self.triage_turns(prompt, history)
        if not self.config.enabled:
            return Decision(triage)
        region = self.config.resources
        label = triage.label
        if label == "emergency":
            context = " ".join([*(m.get("content", "") for m in (history or []) if m.get("role") == "user"), prompt])
            return Decision(triage, reply=emergency_reply(region, context))
        if label == "crisis":
            return Decision(triage, reply=crisis_reply(region))
        if label == "harmful":
            return Decision(triage, reply=harmful_reply(region))
        users = [m.get("content", "") for m in (history or []) if m.get("role") == "user"][-2:]
        intent = intends_harm(" ".join([*users, prompt]))
        if label == "prescription":
            return Decision(triage, system_addendum=PRESCRIPTION_ADDENDUM, prefix=PRESCRIPTION_PREFIX, harm_intent=intent)
        return Decision(triage, harm_intent=intent)

    def after(self, decision: Decision, answer: str) -> Guarded:
        label = decision.triage.label
        if not self.config.enabled:
            return Guarded(answer, label, [])
        fired = [] if label == "general" else [f"triage:{label}"]
        if decision.reply is not None:
            return Guarded(decision.reply, label, [*fired, "fixed_reply"])
        answer = (answer or "").strip()
        if decision.harm_intent and gives_means(answer):  # triage missed it; the answer must not carry the means
            return Guarded(harmful_reply(self.config.resources), label, [*fired, "harm_intent"])
        if self.config.block_doses:
            answer, removed = remove_doses(answer, only_rx_drugs=label != "prescription")
            if removed:
                fired.append("dose_removed")
        if decision.prefix:
            answer = f"{decision.prefix}\n\n{without_prefix(answer, decision.prefix)}".strip()
            fired.append("prefix")
        disclaimer = self.disclaimer
        if disclaimer and disclaimer not in answer:
            answer = f"{answer}\n\n{disclaimer}".strip()
            fired.append("disclaimer")
        return Guarded(answer, label, fired)

    def stream(self, decision: Decision, pieces: Iterable[str]) -> GuardedStream:
        """``after`` for an answer that arrives in pieces (chat REPL, UI, API streaming).

        Iterating the result yields text as it becomes safe to show; its ``result`` (set once the
        iteration ends) is exactly ``after(decision, <whole answer>)``, and the yielded pieces add
        up to ``result.answer``.
        """
        return GuardedStream(self.after, self.config.enabled, decision, pieces)

    @property
    def disclaimer(self) -> str:
        return self.config.disclaimer_text

