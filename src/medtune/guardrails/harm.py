"""The output-side harm check: catch what triage missed.

Triage decides from the question alone, and a new wording can slip past it as ``general``. The
model then answers, and if that answer carries a quantity, dose or method, the harm is done.
``Guardrails.after`` therefore checks the pair: when the question shows intent to harm or kill
(``intends_harm``) and the answer gives the means (``gives_means``), the answer is replaced by the
harmful reply. Intent here is looser than triage, because it only acts together with an answer
that gives a quantity or method:

* any harmful triage rule (lethal dose, amount to kill, poisoning a person, covert dosing, ...);
* the dose, amount or quantity that would *stop, shut down or destroy* a heart, liver, kidneys,
  lungs, breathing or "an organ" (the class of phrasing a held-out red team found triage missing);
* the amount that would cause cardiac arrest, organ failure or death;
* killing, ending a life, never waking up, a death that looks natural.
"""

from __future__ import annotations

import re

from medtune.guardrails.doses import has_dose
from medtune.guardrails.normalise import normalise
from medtune.guardrails.rules import match_rules

_ORGAN = (r"(?:hearts?|livers?|kidneys?|lungs?|brains?|organs?|breathing|pulse|heartbeat|circulation|bone marrow)"
          r"(?!\s+(?:stones?|infections?|disease|function|tests?|transplants?|cancer|rate|health))")
_STOP = (r"(?:stop\w*|shut\w*(?: down| off)?|destroy\w*|wreck\w*|knock\w* out|kill\w*|fail\w*|give out|packs? up|"
         r"seize\w* up|finish\w* off|ruin\w*|pack\w* in|quit\w*|give up|stop working|close down)")
_ASK = r"(?:dose|dosage|amount|quantity|how (?:much|many)|what (?:amount|number)|enough|grams?|mg|pills?|tablets?|units?)"
INTENT_PATTERNS = [
    # the dose that would stop an organ, in either order ("what dose would stop her kidneys", "to shut down the liver, how much")
    rf"\b{_ASK}\b[^.?!]{{0,80}}\b{_STOP}\b[^.?!]{{0,30}}\b{_ORGAN}\b",
    rf"\b{_ASK}\b[^.?!]{{0,80}}\b{_ORGAN}\b[^.?!]{{0,20}}\b(?:to )?{_STOP}\b",
    rf"\b{_STOP}\b[^.?!]{{0,30}}\b{_ORGAN}\b[^.?!]{{0,60}}\b{_ASK}\b",
    r"\b(?:kill|murder|finish off|end (?:the |a )?life of|get rid of|do away with)\b[^.?!]{0,40}"
    r"\b(?:him|her|them|someone|somebody|a person|people|my \w+|an? (?:old|elderly|sick) \w+|a patient|a child|a baby)\b",
    r"\b(?:so|until|that) (?:he|she|they|someone|the person|my \w+) "
    r"(?:never|does ?n[o']t|wo ?n[o']t|would ?n[o']t) (?:wakes?|wake up|breathes?|survive)",
    r"\b(?:never|not) wake up\b[^.?!]{0,40}\b(?:him|her|them|someone|my \w+)\b",
    r"\b(?:him|her|them|someone|my \w+)\b[^.?!]{0,40}\bnever wake up\b",
    r"\b(?:look|seem|appear|pass)\b[^.?!]{0,25}\b(?:natural\w*|an accident|(?:his|her|their) illness)\b",
    r"\boverdose (?:him|her|them|someone|somebody|my \w+|a \w+)\b",
    r"\b(?:lethal|fatal|deadly)\b[^.?!]{0,20}\b(?:to|for|in) (?:humans?|people|a person|adults?|children|a child)\b",
    rf"\b{_ASK}\b[^.?!]{{0,80}}\b(?:cause|induce|trigger|bring on|lead to)\w*\b[^.?!]{{0,20}}"
    r"\b(?:cardiac arrest|(?:heart|liver|kidney|renal|organ|respiratory|multi-?organ) failure|death)\b",
]
_INTENT_RE = re.compile("|".join(INTENT_PATTERNS))
_METHOD_RE = re.compile(
    r"\b(?:crush\w*|dissolv\w*|mix\w*|slip\w*|stir\w*|hid\w*|inject\w*|add\w*|put\w*|sprinkl\w*)\b[^.?!]{0,50}\b(?:into|in|under)\b[^.?!]{0,30}"
    r"\b(?:drink|food|tea|coffee|meal|water|juice|vein|iv|drip|skin|bloodstream|muscle)\b"
    r"|\b(?:double|triple|quadruple|\d+ times)\b[^.?!]{0,20}\b(?:the )?(?:dose|amount|dosage)\b"
    r"|\b\d+(?:[.,]\d+)?\s*(?:times|x)\s+(?:the|their|his|her|a)\b[^.?!]{0,20}\b(?:dose|amount|dosage)\b"
    r"|\b(?:a|one|the) (?:whole|entire|full) (?:bottle|packet|pack|strip|box|vial)\b",
    re.IGNORECASE,
)


def intends_harm(text: str) -> bool:
    """True when the question (and the recent user turns joined to it) shows intent to harm or kill someone."""
    norm = normalise(text)
    return bool(_INTENT_RE.search(norm)) or any(label == "harmful" for label, _ in match_rules(norm))


def gives_means(answer: str) -> bool:
    """True when the answer holds a quantity, dose or method (a dose figure, "crush it into a drink", "a whole bottle")."""
    return has_dose(answer) or bool(_METHOD_RE.search(answer))
