"""medtune.guardrails.rules: the triage rules file (data/builtin/triage_rules.yaml), its loader and validation.

``fixtures/triage_rules_expected.json`` was generated once from the regexes as they were written in
Python (medtune.guardrails at commit af74c9f, before they moved to the YAML file): for every text of
the labelled triage set, the exemplars and the safety suite, the rule hits, framings, the educational
flag, the framing-stripped text and whether a prescription drug is named, plus a hash of every
compiled pattern. The rules loaded from the file must reproduce all of it. A deliberate rule change
updates the fixture in the same commit.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from medtune.guardrails import RULES_PATH, RulesError, detect_framings, is_educational, load_rules, match_rules, normalise, strip_framings
from medtune.guardrails.doses import rx_drug_re
from medtune.guardrails.rules import fragment, rules

EXPECTED = json.loads((Path(__file__).parent / "fixtures" / "triage_rules_expected.json").read_text(encoding="utf-8"))


def sha16(pattern: str) -> str:
    return hashlib.sha256(pattern.encode()).hexdigest()[:16]


def test_compiled_patterns_are_exactly_the_python_ones():
    r = rules()
    compiled = {f"rule:{label}:{name}": rx.pattern for label, entries in r.rules.items() for name, rx in entries}
    compiled |= {f"framing:{name}": rx.pattern for name, rx in r.framings.items()}
    compiled |= {"educational:question": r.question.pattern, "educational:personal": r.personal.pattern}
    compiled["fragment:rx_drug"] = fragment("rx_drug")
    assert list(compiled) == list(EXPECTED["patterns_sha256_16"])  # same rules, same order (the order of the reasons)
    assert {key: sha16(p) for key, p in compiled.items()} == EXPECTED["patterns_sha256_16"]


def test_every_text_gets_the_same_hits_as_before():
    texts = EXPECTED["texts"]
    assert len(texts) > 800 and sum(bool(t["rules"]) for t in texts) >= 300
    for row in texts:
        norm = normalise(row["text"])
        got = {
            "text": row["text"],
            "rules": [f"{label}:{name}" for label, name in match_rules(norm)],
            "framings": detect_framings(norm),
            "educational": is_educational(norm),
            "rx_drug": bool(rx_drug_re().search(norm)),
        }
        stripped = strip_framings(norm)
        if stripped != norm:
            got["stripped"] = stripped
        assert got == row


def test_builtin_file_is_valid_and_covers_every_urgent_label():
    ruleset = load_rules(RULES_PATH)
    assert list(ruleset.rules) == ["emergency", "crisis", "harmful", "prescription"]
    assert set(ruleset.fragments) == {"person", "rx_drug", "dose_ask", "drug_ask", "otc_drug"}
    assert "<<" not in "".join(rx.pattern for entries in ruleset.rules.values() for _, rx in entries)


# --- validation ----------------------------------------------------------------------------------

VALID = """\
fragments:
  pet: ['dog', 'cat']
rules:
  emergency:
    - name: pet_choking
      patterns:
        - '\\bmy <<pet>> is choking\\b'
        - '\\bchoking <<pet>>'
  harmful:
    - name: poison_pet
      patterns: ['\\bpoison (?:a|the) <<pet>>']
framings:
  - name: story
    patterns: ['\\bfor a story\\b']
educational:
  question: '^(?:what|how)\\b'
  personal: '\\b(?:i|my)\\b'
"""


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_small_rules_file_loads_and_matches(tmp_path):
    ruleset = load_rules(write(tmp_path, VALID))
    assert ruleset.fragments == {"pet": "(?:dog|cat)"}
    [(name, rx)] = ruleset.rules["emergency"]
    assert name == "pet_choking" and rx.pattern == r"\bmy (?:dog|cat) is choking\b|\bchoking (?:dog|cat)"
    assert match_rules("help, my cat is choking", ruleset) == [("emergency", "pet_choking")]
    assert match_rules("how do i poison the dog", ruleset) == [("harmful", "poison_pet")]
    assert match_rules("what is a choking dog sign", ruleset) == []  # educational: emergency rules skipped
    assert list(ruleset.framings) == ["story"]


@pytest.mark.parametrize(
    "old, new, message",
    [
        (r"'\bpoison (?:a|the) <<pet>>'", r"'\bpoison (?:a|the <<pet>>'", r"rule harmful 'poison_pet' pattern 1: bad regex"),
        (r"'\bpoison (?:a|the) <<pet>>'", r"'\bpoison <<cow>>'", r"rule harmful 'poison_pet' pattern 1: unknown fragment <<cow>>"),
        ("  harmful:", "  dangerous:", r"rules for 'dangerous': unknown label"),
        ("  harmful:", "  general:", r"rules for 'general': unknown label"),
        ("name: poison_pet\n      patterns:", "name: poison_pet\n      pattern:", r"rule harmful 'poison_pet': each entry needs"),
        ("['\\bfor a story\\b']", "[]", r"framing 'story': 'patterns' must be a non-empty list"),
        ("name: poison_pet", "name: pet_choking", None),  # the same name under another label is fine (duplicates: below)
        ("  pet: ['dog', 'cat']", "  pet: ['dog', '(cat']", r"fragment 'pet': bad regex"),
        ("  pet: ['dog', 'cat']", "  pet: ['dog', '<<cat>>']", r"fragment 'pet': fragments cannot use placeholders"),
        ("educational:", "lessons:", r"unknown section\(s\) lessons"),
        ("  personal: '\\b(?:i|my)\\b'\n", "", r"educational: needs exactly 'question' and 'personal'"),
    ],
)
def test_validation_names_the_file_and_the_rule(tmp_path, old, new, message):
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new))
    if message is None:
        assert load_rules(path).rules["harmful"][0][0] == "pet_choking"
        return
    with pytest.raises(RulesError, match=re.escape(str(path)) + ": " + message):
        load_rules(path)


def test_validation_rejects_duplicates_and_non_yaml(tmp_path):
    second = "    - name: pet_choking\n      patterns: ['x']\n"
    duplicate = VALID.replace("  harmful:\n", second + "  harmful:\n")
    with pytest.raises(RulesError, match=r"rule emergency 'pet_choking': duplicate name"):
        load_rules(write(tmp_path, duplicate))
    with pytest.raises(RulesError, match=r"not valid YAML"):
        load_rules(write(tmp_path, "rules: [unclosed"))
    with pytest.raises(RulesError, match=r"expected a mapping"):
        load_rules(write(tmp_path, "- just a list"))
