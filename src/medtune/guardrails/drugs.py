"""Drug names in free text, from a maintained lexicon rather than a list of our own.

The triage rules name the drugs people most often ask doses of (the ``rx_drug`` fragment), but any list
we write misses most of the pharmacopoeia: a held-out red-team set asked doses of montelukast,
losartan, sumatriptan and allopurinol, triage labelled them ``general`` and the model answered with a
dose. ``drug-named-entity-recognition`` (MIT; DrugBank, MeSH, NHS and Wikipedia names, generic and brand,
shipped with the package, no network) finds them. A question that names a drug and asks a dose,
a schedule or a prescription (the ``drug_ask`` fragment) is a prescription ask; a general answer that
names one that is not over the counter (the ``otc_drug`` fragment) loses its dose figures (``doses.remove_doses``).
"""

from __future__ import annotations

import re
from functools import cache

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]*")


@cache
def _finder():
    from drug_named_entity_recognition import find_drugs  # ~1 s to load its lexicon, once

    return find_drugs


def drug_names(text: str) -> tuple[str, ...]:
    """The drugs ``text`` names (the lexicon's preferred names, in order of appearance, without repeats)."""
    words = [w.strip("'-") for w in _WORD.findall(text)]
    found = _finder()([w for w in words if w], is_ignore_case=True)
    return tuple(dict.fromkeys(drug["name"] for drug, *_ in found))


@cache
def _fragment_re(name: str) -> re.Pattern:
    """A rules fragment compiled once, from a word boundary (``otc_drug`` is matched whole, ``drug_ask`` searched)."""
    from medtune.guardrails.rules import fragment

    return re.compile(r"\b" + fragment(name), re.IGNORECASE)


def prescription_drugs(text: str) -> tuple[str, ...]:
    """The drugs ``text`` names that are not over the counter (the rules' ``otc_drug`` fragment)."""
    return tuple(name for name in drug_names(text) if not _fragment_re("otc_drug").fullmatch(name))


def drug_ask(norm: str) -> str | None:
    """The drug a question asks a dose, schedule or prescription of (normalised text), else None."""
    if not _fragment_re("drug_ask").search(norm):
        return None
    names = prescription_drugs(norm)
    return names[0] if names else None
