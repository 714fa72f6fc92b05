"""Cleaning steps: quality filters and PII scrubbing.

Every processing step (here, in ``dedup`` and in ``decontaminate``) is a function
``(records, **options) -> StepResult``: the records that go on, plus counts of what was dropped
and changed, so the data card can say what each step did and show a few example ids.
Steps never modify their input records; a changed record is a new ``Record``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from medtune.data.records import Record

MAX_EXAMPLES = 3


@dataclass
class StepResult:
    records: list[Record]
    """What goes on to the next step, in input order."""
    dropped: Counter = field(default_factory=Counter)
    """Reason → number of records dropped."""
    changed: Counter = field(default_factory=Counter)
    """Kind of change → count (e.g. ``{"email": 12, "phone": 3}``)."""
    examples: dict[str, list[str]] = field(default_factory=dict)
    """Reason or kind → up to ``MAX_EXAMPLES`` record ids."""
    by_source: dict[str, Counter] = field(default_factory=dict)
    """Reason → ``Record.source`` → number dropped (dedupe: ``"a (dup of b)"`` across sources)."""

    def drop(self, reason: str, record: Record, source: str | None = None) -> None:
        self.dropped[reason] += 1
        self.by_source.setdefault(reason, Counter())[source or record.source] += 1
        self.example(reason, record.id)

    def example(self, key: str, record_id: str) -> None:
        shown = self.examples.setdefault(key, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(record_id)

    def to_dict(self) -> dict[str, Any]:
        """The summary for the data card (everything but the records)."""
        return {
            "kept": len(self.records),
            "dropped": dict(self.dropped),
            "changed": dict(self.changed),
            "examples": self.examples,
            "by_source": {k: dict(v) for k, v in self.by_source.items()},
        }


# --- quality filter ----------------------------------------------------------------------------

Tokenizer = Callable[..., Any]


def quality_filter(
    records: list[Record],
    min_answer_chars: int = 0,
    max_answer_chars: int | None = None,
    min_question_chars: int = 0,
    max_tokens: int | None = None,
    tokenizer: Tokenizer | None = None,
    language: str | None = None,
) -> StepResult:
    """Drop records that are empty, too short, too long, or (optionally) not in ``language``.

    Reasons, checked in this order (a record counts under the first that fails):
    ``empty_question``, ``empty_answer`` (whitespace-only question/answer, or any empty turn in
    ``messages``), ``short_question``, ``short_answer``, ``long_answer`` (characters, stripped),
    ``too_many_tokens`` (question + reasoning + answer, or all turns), ``language``.

    ``max_tokens`` counts with ``tokenizer`` (a Hugging Face tokenizer, called on a batch of
    texts) when given, else estimates ``len(text) / 4`` tokens (the usual rule of thumb for
    English with BPE vocabularies). ``language="en"`` is a cheap heuristic, not a language
    identifier: at least 90% of the letters must be ASCII, and texts of 20+ words must contain
    common English function words ("the", "and", "of", ...) in at least 1 word of 30 (English
    prose has about 1 in 2; a list of drug names still passes).
    """
    if language not in (None, "en"):
        raise ValueError(f"language: only 'en' (or None) is supported, got {language!r}")
    result = StepResult(records=[])
    survivors = []
    for r in records:
        reason = _first_failure(r, min_question_chars, min_answer_chars, max_answer_chars)
        if reason:
            result.drop(reason, r)
        else:
            survivors.append(r)
    if max_tokens is not None:
        counts = _token_counts([_full_text(r) for r in survivors], tokenizer)
        kept = []
        for r, n in zip(survivors, counts):
            if n > max_tokens:
                result.drop("too_many_tokens", r)
            else:
                kept.append(r)
        survivors = kept
    for r in survivors:
        if language == "en" and not looks_english(_full_text(r)):
            result.drop("language", r)
        else:
            result.records.append(r)
    return result


def _first_failure(r: Record, min_q: int, min_a: int, max_a: int | None) -> str | None:
    question, answer = (r.question or "").strip(), (r.answer or "").strip()
    if not question:
        return "empty_question"
    if not answer or (r.messages and any(not (m.get("content") or "").strip() for m in r.messages)):
        return "empty_answer"
    if len(question) < min_q:
        return "short_question"
    if len(answer) < min_a:
        return "short_answer"
    if max_a is not None and len(answer) > max_a:
        return "long_answer"
    return None


def _full_text(r: Record) -> str:
    if r.messages:
        return "\n".join(m["content"] for m in r.messages)
    return "\n".join(t for t in (r.question, r.reasoning, r.answer) if t)


def _token_counts(texts: list[str], tokenizer: Tokenizer | None, batch: int = 1000) -> list[int]:
    if tokenizer is None:
        return [len(t) // 4 for t in texts]
    counts: list[int] = []
    for start in range(0, len(texts), batch):
        encoded = tokenizer(texts[start : start + batch], add_special_tokens=False)
        ids = encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded
        counts.extend(len(x) for x in ids)
    return counts


_ENGLISH = frozenset(
    "the and of to a an in is it you that for are with be this on have has not your or can as if i my me what "
    "could been was were do does at by from may should will some any there which but so".split()
)


def looks_english(text: str) -> bool:
    """Cheap "en" check (see ``quality_filter``); made for filtering corpora, not for routing."""
    if not text.isascii():
        letters = sum(c.isalpha() for c in text)
        if letters == 0 or sum(c.isalpha() and not c.isascii() for c in text) > 0.1 * letters:
            return False
    elif not any(c.isalpha() for c in text):
        return False
    words = text.lower().split()
    if len(words) < 20:
        return True
    return sum(map(_ENGLISH.__contains__, words)) * 30 >= len(words)


# --- PII -----------------------------------------------------------------------------------------

_TITLE = r"(?:Dr|Mr|Mrs|Ms|Prof)"
"""Titles that precede a name wherever they appear ("Miss" is also a verb in title-case headlines,
so it only counts after a greeting: "Dear Miss Smith," -> "Dear [NAME],")."""
_NAME = r"(?:[A-Z]\.\s?)*[A-Z][a-z][A-Za-z'-]*(?:\s(?:[A-Z]\.\s?)*[A-Z][a-z][A-Za-z'-]*){0,2}"
_NOT_NAMES = (
    r"(?:Doctor|Doc|Sir|Madam|Mam|Maam|There|Friend|All|Team|Everyone|Welcome|Thanks?|Thank|"
    r"And|I|Dear|Again|User|Patient|Chat|Please|Take|Hope|Good|Best|Kind|Warm|You|Your|The|This|"
    r"It|In|For|As|Also|Regards|Sincerely|My|We|Get|Wish|Wishing|Hello|Hi|Hey|Yes|No|Ok|Okay|Bye|"
    r"Sorry|Let|Do|Don|Is|Are|Can|Will|So|But|If|Madame|Sister|Brother|Mother|Father|Ma|Mom|Dad)\b"
)
_PHONE_WORDS = r"(?i:phone|telephone|tel|mobile|whatsapp|contact\s+(?:no|number)|call\s+(?:me\s+)?(?:at|on))"
_SIGNOFF_WORDS = r"(?:(?i:regards|sincerely|cheers|thanks|thank\s+you|best\s+wishes|yours\s+truly))"
_GREETING_WORDS = r"(?:(?i:hi|hello|hey|dear|good\s+(?:morning|afternoon|evening)))"

_DIGITS = b"0123456789"


def _has_digits(text: str, low: str, at_least: int = 7) -> bool:
    raw = text.encode()
    return len(raw) - len(raw.translate(None, _DIGITS)) >= at_least


# kind -> [(pattern, cheap test that must pass before the regex runs)]. Python's regex engine
# scans slowly for patterns that start with a lookbehind or an alternation, so each pattern
# gets a substring test on (text, " " + lower-cased text with newlines as spaces) that rules
# most records out at C speed. Capturing groups hold context to keep ("Dr. " in "Dr. Smith");
# only the rest of the match becomes the placeholder.
_PII: dict[str, list[tuple[re.Pattern, Callable[[str, str], bool]]]] = {
    "email": [(re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), lambda t, low: "@" in t)],
    "url": [
        (
            re.compile(
                r"\b(?:https?://|www\.)[^\s<>\"')\]]*[^\s<>\"')\].,;:!?]"
                r"|\b[\w-]{2,}(?:\.[\w-]+)*\.(?:com|org|net|gov|edu|info|io)(?:\.[a-z]{2})?\b(?:/[^\s<>\"')\]]*[^\s<>\"')\].,;:!?])?"
            ),
            lambda t, low: (
                "http" in low or "www." in low or any(s in low for s in (".com", ".org", ".net", ".gov", ".edu", ".info", ".io"))
            ),
        )
    ],
    "phone": [
        # International (+CC ...), (area) local, US 3-3-4, Indian 5-5, 10-12 bare digits, or a digit
        # run after a phone keyword; at least 7 digits in the text. Ranges ("1500-2000 mg"),
        # ratios ("120/80"), decimals ("5.7%") and dates ("12/03/2020") have none of these shapes.
        (
            re.compile(
                r"(?<![\w/.+-])(?:"
                r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{2,5}(?:[\s.-]?\d{2,5}){1,3}"
                r"|\(\d{2,4}\)\s?\d{3,4}[\s.-]?\d{3,4}"
                r"|\d{3}[\s.-]\d{3}[\s.-]\d{4}"
                r"|\d{5}\s\d{5}"
                r"|\d{10,12}"
                r")(?![\d/%])(?!\.\d)"
                rf"|(\b{_PHONE_WORDS}(?:\s*(?:no\.?|number|#))?\s*[:.-]?\s*)\+?\d[\d\s().-]{{5,}}\d"
            ),
            _has_digits,
        )
    ],
    "name": [
        # After a title anywhere ("Dr. Y", "Mrs Smith" -> "Dr. [NAME]", "Mrs [NAME]").
        (
            re.compile(rf"(?<![A-Za-z])({_TITLE}\.?\s)(?!{_NOT_NAMES}){_NAME}"),
            lambda t, low: any(s in t for s in ("Dr", "Mr", "Ms", "Prof")),
        ),
        # After a greeting, before a comma/colon/line end ("Hi John,", "Dear Ann:").
        (
            re.compile(rf"(?<![A-Za-z])({_GREETING_WORDS}[ \t]+)(?!{_NOT_NAMES}|{_TITLE}\b){_NAME}(?=[ \t]*(?:[,!:]|\n|$))"),
            lambda t, low: any(s in low for s in (" hi ", " hello", " hey ", " dear ", " good m", " good a", " good e")),
        ),
        # A sign-off ending its line ("Thanks, John", "Regards,\nAnna"; "Regards, Dr. Y" is a title).
        (
            re.compile(
                rf"(?<![A-Za-z])({_SIGNOFF_WORDS}[ \t]*[,.\-:]?[ \t]*\n?[ \t]*)(?!{_NOT_NAMES}|{_TITLE}\b){_NAME}"
                r"(?=[ \t]*[,.!]?[ \t]*(?:\n|$))"
            ),
            lambda t, low: any(s in low for s in ("regards", "sincerely", "cheers", "thank", "best wishes", "truly")),
        ),
    ],
}
_PLACEHOLDERS = {"email": "[EMAIL]", "url": "[URL]", "phone": "[PHONE]", "name": "[NAME]"}


def scrub_pii(records: list[Record]) -> StepResult:
    """Replace emails, URLs, phone numbers and personal names with ``[EMAIL]``, ``[URL]``,
    ``[PHONE]``, ``[NAME]`` in questions, answers, reasoning and messages.

    Names are only those after a title ("Dr. Y", "Mrs Smith", keeping the title), after a greeting
    ("Hi John,", "Dear Ms Smith,") or as a sign-off at the end of a line ("Regards, Dr. Y",
    "Thanks, John") — a general name recogniser would also eat drug and disease names.
    Medical numbers keep their shape: "120/80 mmHg", "5.7%", "1500-2000 mg", "2 weeks" and dates
    are not phone numbers. ``changed`` counts replacements per kind, plus ``records`` (records
    with at least one); a text repeated in ``messages`` and ``question`` is counted once.
    ``meta`` is left as it is.
    """
    result = StepResult(records=[])
    for r in records:
        texts = [t for t in dict.fromkeys([r.question, r.answer, r.reasoning, *(m["content"] for m in r.messages or [])]) if t]
        patterns = _worth_trying("\n".join(texts))
        if not patterns:
            result.records.append(r)
            continue
        kinds: Counter = Counter()
        fixed: dict[str, str] = {}
        for text in texts:
            fixed[text], found = _apply(text, patterns)
            kinds.update(found)
        if not kinds:
            result.records.append(r)
            continue

        def fix(text: str | None, fixed: dict[str, str] = fixed) -> str | None:
            return fixed.get(text, text) if text else text

        messages = [{**m, "content": fix(m["content"])} for m in r.messages] if r.messages else r.messages
        result.records.append(replace(r, question=fix(r.question), answer=fix(r.answer), reasoning=fix(r.reasoning), messages=messages))
        result.changed["records"] += 1
        for kind, n in kinds.items():
            result.changed[kind] += n
            result.example(kind, r.id)
    return result


def scrub_text(text: str) -> tuple[str, Counter]:
    """``text`` with PII replaced, and the number of replacements per kind."""
    return _apply(text, _worth_trying(text))


def _worth_trying(text: str) -> list[tuple[str, re.Pattern]]:
    low = " " + text.lower().replace("\n", " ")
    return [(kind, pattern) for kind, patterns in _PII.items() for pattern, test in patterns if test(text, low)]


def _apply(text: str, patterns: list[tuple[str, re.Pattern]]) -> tuple[str, Counter]:
    found: Counter = Counter()
    for kind, pattern in patterns:
        placeholder = _PLACEHOLDERS[kind]
        text, n = pattern.subn(lambda m, placeholder=placeholder: "".join(g for g in m.groups() if g) + placeholder, text)
        if n:
            found[kind] += n
    return text, found
