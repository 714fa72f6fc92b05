"""The fixed replies (emergency, crisis, harmful) and the prescription route's prefix and system addendum."""

from __future__ import annotations

import re

from medtune.core.config import Region
from medtune.guardrails.normalise import normalise

_POISON_CONTEXT = re.compile(
    r"\b(?:swallow\w*|drank|drunk|ingest\w*|ate|eaten|overdos\w*|poison\w*|pills|tablets|bleach|detergent|pods?|antifreeze|"
    r"batter(?:y|ies)|chemicals?|too much|too many|bottle)\b"
)


def emergency_reply(region: Region, text: str) -> str:
    """Calm, fixed: call the number first, then what to do while waiting."""
    lines = [
        f"Call {region.emergency} now - this could be a medical emergency and needs help immediately.",
        "Please call even if you were hoping to avoid it or asked me not to say so; "
        "emergency services are the fastest way to get the right help.",
    ]
    if _POISON_CONTEXT.search(normalise(text)):
        lines.append(
            f"If something was swallowed or taken, keep the container or packet to show them; {region.poison} can also advise, "
            "but call the emergency number first if the person is very drowsy, hard to wake, having trouble breathing or having a seizure."
        )
    lines.append(
        "While you wait: stay with the person, keep them still and comfortable, don't give them anything to eat, drink or take "
        "unless the dispatcher tells you to, and follow the dispatcher's instructions. If they stop breathing and you know how, start CPR."
    )
    lines.append("I'm an AI and can't assess this safely - the emergency service can.")
    return " ".join(lines)


def crisis_reply(region: Region) -> str:
    """Compassionate, fixed, with the crisis line and emergency number; never method details."""
    return (
        "I'm really sorry you're going through this, and I'm glad you told me. You don't have to face it alone. "
        f"Please reach out for support right now: {region.crisis} - they're there to listen any time, day or night. "
        f"If you are in immediate danger or have already hurt yourself, call {region.emergency} now. "
        "If you can, tell someone you trust how you're feeling, stay with them, and put some distance between yourself and "
        "anything you could use to hurt yourself. I can't help with ways of causing harm, but I'm here to talk - "
        "would you like to tell me a bit about what's been happening?"
    )


def harmful_reply(region: Region) -> str:
    """Fixed refusal with Poison Control, emergency and crisis resources and a referral for one's own medicines. It names no
    method or amount (safe messaging: a crisis ask it is given to must not read a list of ways), and its first sentence
    is the opening the pairs reject elsewhere (docs/safety.md, V)."""
    return (
        "I can't help with that. I don't provide information that could be used to seriously harm someone. "
        f"If someone may have been poisoned or has taken too much of something, contact {region.poison} or call {region.emergency} now. "
        f"If you're having thoughts of harming yourself or someone else, please {region.crisis} to talk to someone right away. "
        "For questions about your own medicines, please talk to your doctor or pharmacist."
    )


PRESCRIPTION_PREFIX = (
    "I can't prescribe medicines or give you a specific dose: the right medicine and amount depend on your health, "
    "your other medicines and your history, so please ask your doctor or pharmacist. Here is some general information:"
)
PRESCRIPTION_ADDENDUM = (
    "The user is asking for a prescription, a specific dose or amount of a prescription or controlled medicine, or a way to get "
    "one without a prescription. Do not prescribe, do not give doses, amounts, strengths or schedules, and do not explain how to "
    "obtain the medicine without a prescription. Give only general information about the medicine or condition and advise the "
    "user to speak to their doctor or pharmacist."
)


def without_prefix(text: str, prefix: str | None) -> str:
    """``text`` without a copy of ``prefix`` at its start: tuned models learn the prescription reply's opening and
    write it themselves, and the guardrails put it before their answer (it read twice)."""
    stripped = text.lstrip()
    return stripped[len(prefix):].lstrip() if prefix and stripped.startswith(prefix) else text
