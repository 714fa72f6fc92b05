"""Triage rules: regular expressions kept as data in ``data/builtin/triage_rules.yaml``.

The file (its header documents the format) holds named fragments, the rules per label, the
jailbreak framings and the educational-question patterns. ``load_rules`` validates and compiles
it; ``rules()`` does that once for the built-in file. Everything here runs on normalised text
(``medtune.guardrails.normalise``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from medtune.core.assets import BUILTIN_DIR

LABELS = ("emergency", "crisis", "harmful", "prescription", "general")
"""Triage labels, most urgent first (this is also the priority order)."""

RULES_PATH = BUILTIN_DIR / "triage_rules.yaml"

PLACEHOLDER = re.compile(r"<<([^<>]*)>>")
"""``<<name>>`` stands for the fragment ``name`` (regex syntax never contains ``<<``)."""
_NAME = re.compile(r"[a-z_]+")
_SECTIONS = {"fragments", "rules", "framings", "educational"}


class RulesError(ValueError):
    """The rules file is malformed: names the file and the rule at fault."""


@dataclass(frozen=True)
class RuleSet:
    rules: dict[str, list[tuple[str, re.Pattern]]]
    """Label -> [(rule name, compiled alternation of its patterns)], labels in ``LABELS`` order."""
    framings: dict[str, re.Pattern]
    question: re.Pattern
    personal: re.Pattern
    fragments: dict[str, str]
    """Fragment name -> its regex, ``(?:alt1|alt2|...)``."""


def load_rules(path: str | Path = RULES_PATH) -> RuleSet:
    """Read, validate and compile a rules file; raises ``RulesError`` naming the file and the rule."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise RulesError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise RulesError(f"{path}: expected a mapping with {', '.join(sorted(_SECTIONS))}")
    unknown = set(data) - _SECTIONS
    if unknown:
        raise RulesError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(_SECTIONS))}")

    def fail(where: str, problem: str):
        raise RulesError(f"{path}: {where}: {problem}")

    def compile_(where: str, pattern: str) -> re.Pattern:
        try:
            return re.compile(pattern)
        except re.error as err:
            fail(where, f"bad regex: {err}")

    fragments: dict[str, str] = {}
    for name, alternatives in (data.get("fragments") or {}).items():
        where = f"fragment {name!r}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            fail(where, "fragment names are lower-case letters and underscores")
        if not _strings(alternatives):
            fail(where, "must be a non-empty list of strings")
        if any(PLACEHOLDER.search(a) for a in alternatives):
            fail(where, "fragments cannot use placeholders")
        fragments[name] = "(?:" + "|".join(alternatives) + ")"
        compile_(where, fragments[name])

    def expand(where: str, pattern: str) -> str:
        def substitute(match: re.Match) -> str:
            if match.group(1) not in fragments:
                fail(where, f"unknown fragment <<{match.group(1)}>> (known: {', '.join(fragments) or 'none'})")
            return fragments[match.group(1)]

        return PLACEHOLDER.sub(substitute, pattern)

    def named(entries, kind: str) -> list[tuple[str, re.Pattern]]:
        if not isinstance(entries, list):
            fail(kind, "must be a list of {name, patterns}")
        out: list[tuple[str, re.Pattern]] = []
        for i, entry in enumerate(entries):
            name = entry.get("name") if isinstance(entry, dict) else None
            where = f"{kind} {name!r}" if isinstance(name, str) else f"{kind} entry {i + 1}"
            if not isinstance(entry, dict) or set(entry) != {"name", "patterns"} or not isinstance(name, str) or not name:
                fail(where, "each entry needs exactly a non-empty 'name' and 'patterns'")
            if not _strings(entry["patterns"]):
                fail(where, "'patterns' must be a non-empty list of strings")
            if any(name == seen for seen, _ in out):
                fail(where, "duplicate name")
            expanded = [expand(f"{where} pattern {k + 1}", p) for k, p in enumerate(entry["patterns"])]
            for k, p in enumerate(expanded):
                compile_(f"{where} pattern {k + 1}", p)
            out.append((name, compile_(where, "|".join(expanded))))
        return out

    by_label = data.get("rules") or {}
    if not isinstance(by_label, dict):
        fail("rules", "must map a label to its list of rules")
    for label in by_label:
        if label not in LABELS[:-1]:
            fail(f"rules for {label!r}", f"unknown label; rules exist for {', '.join(LABELS[:-1])}")
    rules = {label: named(by_label[label], f"rule {label}") for label in LABELS if label in by_label}
    framings = dict(named(data.get("framings") or [], "framing"))

    educational = data.get("educational")
    if not isinstance(educational, dict) or set(educational) != {"question", "personal"} or not _strings(list(educational.values())):
        fail("educational", "needs exactly 'question' and 'personal', each a regex string")
    question = compile_("educational question", expand("educational question", educational["question"]))
    personal = compile_("educational personal", expand("educational personal", educational["personal"]))
    return RuleSet(rules, framings, question, personal, fragments)


def _strings(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


@cache
def rules() -> RuleSet:
    """The built-in rules, loaded and compiled on first use."""
    return load_rules(RULES_PATH)


def fragment(name: str) -> str:
    """A built-in fragment's regex (e.g. 'rx_drug', the prescription/controlled drug names)."""
    return rules().fragments[name]


def is_educational(norm: str, ruleset: RuleSet | None = None) -> bool:
    """A general question ("what are the signs of a stroke?") with no person or present situation."""
    r = ruleset or rules()
    return bool(r.question.match(norm)) and not r.personal.search(norm)


def match_rules(norm: str, ruleset: RuleSet | None = None) -> list[tuple[str, str]]:
    """(label, rule name) for every rule that matches; emergency/crisis rules skip educational questions."""
    r = ruleset or rules()
    educational = is_educational(norm, r)
    hits = []
    for label, compiled in r.rules.items():
        if educational and label in ("emergency", "crisis"):
            continue
        hits += [(label, name) for name, rx in compiled if rx.search(norm)]
    return hits


def detect_framings(norm: str) -> list[str]:
    """Names of the jailbreak framings present in normalised text."""
    return [name for name, rx in rules().framings.items() if rx.search(norm)]


def strip_framings(norm: str) -> str:
    """Cut framing phrases out so that only the underlying request is embedded."""
    for rx in rules().framings.values():
        norm = rx.sub(" ", norm)
    return re.sub(r"\s+", " ", norm).strip(" ,;:-")
