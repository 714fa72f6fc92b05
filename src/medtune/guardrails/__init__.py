"""Safety guardrails around the model: triage a question, then decide what may be said.

Modules: ``guard`` (``Guardrails``: triage, ``before``/``after``/``stream``), ``rules`` (the
triage rules, kept as data in ``data/builtin/triage_rules.yaml``), ``semantic`` (the
sentence-transformers exemplar classifier), ``normalise``, ``doses`` (the dose filter),
``replies`` (fixed replies and the prescription route's texts), ``stream`` (``GuardedStream``).
The configuration is ``medtune.core.config.GuardrailsConfig``.

torch and sentence-transformers are imported lazily: ``import medtune.guardrails`` is cheap.
"""

from medtune.guardrails.doses import DOSE_NOTE, has_dose, remove_doses
from medtune.guardrails.guard import Decision, Guarded, Guardrails, Triage
from medtune.guardrails.normalise import normalise, segments
from medtune.guardrails.replies import PRESCRIPTION_ADDENDUM, PRESCRIPTION_PREFIX, crisis_reply, emergency_reply, harmful_reply
from medtune.guardrails.rules import (
    LABELS,
    RULES_PATH,
    RulesError,
    detect_framings,
    is_educational,
    load_rules,
    match_rules,
    strip_framings,
)
from medtune.guardrails.semantic import EXEMPLARS_PATH, Encoder, EncoderError, SemanticClassifier, load_encoder, load_exemplars
from medtune.guardrails.stream import GuardedStream

__all__ = [
    "DOSE_NOTE", "EXEMPLARS_PATH", "LABELS", "PRESCRIPTION_ADDENDUM", "PRESCRIPTION_PREFIX", "RULES_PATH", "Decision", "Encoder",
    "EncoderError", "Guarded", "GuardedStream", "Guardrails", "RulesError", "SemanticClassifier", "Triage", "crisis_reply",
    "detect_framings", "emergency_reply", "harmful_reply", "has_dose", "is_educational", "load_encoder", "load_exemplars", "load_rules",
    "match_rules", "normalise", "remove_doses", "segments", "strip_framings",
]
