"""The dose filter: find specific dose figures in an answer and replace the sentences that hold them."""

from __future__ import annotations

import re
from functools import cache

from medtune.guardrails.drugs import prescription_drugs
from medtune.guardrails.normalise import normalise
from medtune.guardrails.rules import fragment

_NUM = r"\d+(?:[.,]\d+)?(?:\s*(?:-|to|or)\s*\d+(?:[.,]\d+)?)?"
_UNIT = (
    r"(?:mg|mgs|mcg|µg|μg|ug|ng|g|gm|grams?|milligrams?|micrograms?|ml|mls|millilit(?:er|re)s?|cc|units?|iu|meq|mmol|"
    r"tablets?|tabs?|pills?|capsules?|caps?|puffs?|drops?|patch(?:es)?|sprays?|teaspoons?|tsp|tablespoons?|tbsp|lozenges?|"
    r"suppositor(?:y|ies)|injections?|doses?|sachets?)"
)
_WORD_NUM = r"(?:one|two|three|four|five|six|seven|eight|nine|ten|half|one and a half|a couple of)"
DOSE_PATTERNS = [
    rf"\b{_NUM}\s*{_UNIT}\b(?!\s*/\s*(?:dl|l)\b)",
    rf"\b{_WORD_NUM}\s+(?:tablets?|pills?|capsules?|puffs?|drops?|teaspoons?|patch(?:es)?|sachets?|injections?)\b",
    r"\b(?:mg|mcg|µg|ml|units?|iu)\s*/\s*(?:kg|m2|m²|day|dose|hr|hour)\b|\bper\s+kg\b",
    r"\bevery\s+\d+(?:\s*(?:-|to)\s*\d+)?\s*(?:hours?|hrs?|h)\b",
    r"\b(?:\d+|once|twice|three|four)\s+times?\s+(?:a|per)\s+(?:day|week)\b|\b(?:once|twice)\s+(?:daily|a day|weekly)\b",
]
_DOSE_RE = re.compile("|".join(DOSE_PATTERNS), re.IGNORECASE)
_BARE_UNIT_RE = re.compile(r"\b(?:mcg|µg|μg|micrograms?|mg/kg|mcg/kg)\b", re.IGNORECASE)
DOSE_NOTE = "[Dose details removed - your doctor or pharmacist can tell you the right dose for you.]"


@cache
def rx_drug_re() -> re.Pattern:
    """Names of prescription/controlled drugs: the rules file's ``rx_drug`` fragment, as whole words."""
    return re.compile(r"\b" + fragment("rx_drug") + r"\b", re.IGNORECASE)


def has_dose(text: str) -> bool:
    """True when text holds a specific dose figure ("10 mg", "2 tablets every 4 hours", "mg/kg", "mcg")."""
    return bool(_DOSE_RE.search(text) or _BARE_UNIT_RE.search(text))


def _sentences(line: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", line) if s]


def remove_doses(answer: str, only_rx_drugs: bool = False) -> tuple[str, bool]:
    """Replace every sentence holding a dose instruction with ``DOSE_NOTE`` (one note per run of removals).

    Works line by line so lists keep their shape; a bullet whose text was all doses becomes a
    single note. With ``only_rx_drugs`` nothing is removed unless the answer names a
    prescription/controlled drug, of the rules' list or of the drug lexicon but not over the counter
    (``drugs.prescription_drugs``; used for answers triaged general, so "drink 2 litres of water" in an
    answer about hydration and a paracetamol dose survive).
    """
    if only_rx_drugs and not (has_dose(answer) and (rx_drug_re().search(normalise(answer)) or prescription_drugs(answer))):
        return answer, False  # no dose figure, or no prescription drug: nothing to remove (the lexicon only when needed)
    out: list[str] = []
    removed = False
    for line in answer.split("\n"):
        bullet = re.match(r"^\s*(?:[-*\u2022]|\d+[.)])\s+", line)
        marker, body = (bullet.group(0), line[bullet.end():]) if bullet else ("", line)
        kept: list[str] = []
        for sentence in _sentences(body):
            if not has_dose(sentence):
                kept.append(sentence)
            elif not kept or kept[-1] != DOSE_NOTE:
                kept.append(DOSE_NOTE)
        if kept == [DOSE_NOTE] and out and out[-1].strip() == DOSE_NOTE:
            removed = True
            continue  # a run of dose-only lines collapses into the note already written
        if DOSE_NOTE in kept:
            removed = True
            line = DOSE_NOTE if kept == [DOSE_NOTE] else marker + " ".join(kept)
        out.append(line)
    return "\n".join(out).strip(), removed
