"""ChatDoctor dialogues: HealthCareMagic-100k, iCliniq and GenMedGPT-5k.

All three ship as ``{instruction, input, output}`` rows: ``input`` is the patient's message
(``instruction`` when ``input`` is empty), ``output`` the doctor's reply; the instruction (the
same boilerplate prompt on every row) is kept in ``meta["instruction"]``.

``strip_boilerplate=True`` removes what the platforms wrapped around every answer: opening
greetings ("Hi, Welcome to Chat Doctor. Thanks for your query."), closing sign-offs ("Hope I
have answered your query. Let me know if ... Regards, Dr. X, Pulmonologist") and the
"Chat Doctor" placeholder that the ChatDoctor release put where platform or doctor names were.
Only sentences at the start and the end of an answer are removed, never the medical middle.
What was removed is listed per record in ``meta["boilerplate"]`` (a subset of ``greeting``,
``signoff``, ``platform``); ``boilerplate_counts(records)`` sums them for the data card.
"""

from __future__ import annotations

import re
from collections import Counter

from medtune.data.errors import DataError, OnError, SkipLog
from medtune.data.files import field_text
from medtune.data.records import Record
from medtune.data.sources.rows import collect, source_name

LICENSE = "apache-2.0"
"""Licence of the ChatDoctor release (Kent0n-Li/ChatDoctor); check each platform's terms too."""
HUB_IDS = ("lavita/ChatDoctor-HealthCareMagic-100k", "lavita/ChatDoctor-iCliniq")


def load(
    path: str,
    *,
    on_error: OnError = "raise",
    skips: SkipLog | None = None,
    limit: int | None = None,
    split: str = "train",
    source: str | None = None,
    license: str = LICENSE,
    strip_boilerplate: bool = False,
) -> list[Record]:
    """Records from a ChatDoctor JSON/JSONL/CSV/Parquet file or Hub id.

    Args:
        path: local file, or a Hub dataset id such as ``lavita/ChatDoctor-HealthCareMagic-100k``.
        on_error: ``raise`` on the first bad row, or ``skip`` and count it in ``skips``.
        skips: where skipped rows are counted (a fresh ``SkipLog`` if not given).
        limit: stop after this many records.
        split: Hub split to read.
        source: ``Record.source`` (default: file stem or Hub dataset name).
        license: licence tag for the records.
        strip_boilerplate: remove platform greetings, sign-offs and "Chat Doctor" artefacts.
    """
    source = source or source_name(path)

    def to_record(origin: str, line: int, row: dict) -> Record:
        instruction = field_text(origin, line, row, "instruction", required=False) or ""
        question = field_text(origin, line, row, "input", required=False) or instruction
        if not question:
            raise DataError(origin, "no patient message (both 'input' and 'instruction' are empty)", line=line, field="input")
        answer = field_text(origin, line, row, "output")
        meta: dict = {"instruction": instruction} if instruction and instruction != question else {}
        if strip_boilerplate:
            question, answer, removed = strip(question, answer)
            if not answer:
                raise DataError(origin, "answer is only platform boilerplate", line=line, field="output")
            if removed:
                meta["boilerplate"] = removed
        return Record(id=f"{source}-{line}", source=source, question=question, answer=answer, license=license, meta=meta)

    return collect(path, to_record, on_error=on_error, skips=skips, limit=limit, split=split)


def boilerplate_counts(records: list[Record]) -> Counter:
    """``{"records": n changed, "greeting": n, "signoff": n, "platform": n}`` from ``meta``."""
    counts: Counter = Counter()
    for r in records:
        removed = r.meta.get("boilerplate")
        if removed:
            counts["records"] += 1
            counts.update(removed)
    return counts


# --- boilerplate -------------------------------------------------------------------------------

_SENTENCE_END = re.compile(
    r"((?<=[.!?])(?<!\bDr\.)(?<!\bMr\.)(?<!\bMs\.)(?<!\bMrs\.)(?<!\bProf\.)(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bvs\.)\s+|(?<!\s)\s*\n\s*)"
)
r"""Where sentences end: after . ! ? (not "Dr.", "e.g.", ...) or at a line break, with the blanks around it.
``(?<!\s)``: a line break is looked for only from the start of a run of blanks, once (from every
position inside it, a long run of spaces took quadratic time: 10 s for 100,000)."""
_PLATFORM = re.compile(r"chat\s?doctor|health\s?care\s?magic|icliniq|ask\s?a\s?doctor", re.I)
_GREETING = re.compile(
    r"(?:hi|hello|hey|dear|greetings|good\s+(?:morning|afternoon|evening|day))\b"
    r"(?:\s+(?:there|dear|friend|sir|madam|ma'?am|doctor|user))*"
    r"(?:\s+(?:mr|mrs|ms|dr)\.?)?(?-i:\s+(?!(?:Welcome|Thanks?|Thank|And|I|There|Dear)\b)[A-Z][a-z]+)?[\s,!.:;-]*",
    re.I,
)
_LEAD = re.compile(
    r"(?:and\s+)?(?:"
    r"welcome\b"
    r"|(?:many\s+)?thanks?(?:\s+you)?(?:\s+a\s+lot|\s+very\s+much)?\s+for\b"
    r"|i\s+(?:have\s+|had\s+)?(?:carefully\s+)?(?:gone\s+through|gone\s+thru|read|reviewed|understood|noted)\b.{0,60}\b(?:query|question|concern|history|details|case|description|post|complaints?)\b"
    r"|i\s+(?:can\s+)?(?:understand|appreciate)\s+your\s+(?:concern|query|worry)"
    r"|i\s+am\s+(?:dr\b|doctor\b|a\s+doctor\b)"
    r")",
    re.I,
)
_TAIL = re.compile(
    r"(?:"
    r"(?:i\s+)?hope\s+(?:this|that|it|i\s+have|i've|my|the\s+above|you\s+(?:find|found|got))\b"
    r"|(?:i\s+)?wish(?:ing)?\s+you\b"
    r"|(?:take\s+care|good\s+luck|best\s+wishes|all\s+the\s+best|get\s+well\s+soon|stay\s+(?:safe|healthy|blessed))\b"
    r"|(?:(?:many\s+)?thanks?|thank\s+you)(?:\s+again|\s+a\s+lot|\s+very\s+much)?(?:\s+for\b.*)?[.!]?$"
    r"|(?:let\s+me\s+know|feel\s+free|(?:do\s+not|don't)\s+hesitate|revert\s+back|write\s+back|you\s+(?:can|may)\s+(?:ask|contact|write|consult\s+me))\b"
    r"|if\s+you\s+(?:have|need)\s+(?:any\s+)?(?:further|more|other|additional)\b"
    r"|(?:for|any)\s+(?:further|more)\s+(?:queries|questions|information|doubts|details|clarifications?)\b"
    r")",
    re.I,
)
_SIGNOFF = re.compile(
    r"(?:best\s+|kind\s+|warm\s+|with\s+|thanks\s+(?:and|&)\s+)?regards\b|(?:yours\s+)?(?:sincerely|truly)\b|cheers\b",
    re.I,
)
_SIGNOFF_MAX_WORDS = 15
"""A sign-off ("Regards, Dr. A. Kumar, MD, Pulmonologist") is cut only if this short."""


def strip(question: str, answer: str) -> tuple[str, str, list[str]]:
    """Remove platform boilerplate; return the new question, answer and the kinds removed.

    The answer is cut into sentences (keeping the whitespace between them); greeting sentences
    are dropped from the front, a short "Regards, ..." block and sign-off sentences from the back.
    """
    removed: set[str] = set()
    pieces = _SENTENCE_END.split(answer.strip())
    sentences, gaps = pieces[0::2], pieces[1::2] + [""]
    while sentences and _is_lead(sentences[0]):
        removed.add("platform" if _PLATFORM.search(sentences[0]) else "greeting")
        sentences.pop(0), gaps.pop(0)
    if sentences and _GREETING.match(sentences[0]):  # "Hi, your pressure is fine." -> "Your pressure is fine."
        rest = _GREETING.sub("", sentences[0], count=1)
        sentences[0] = rest[:1].upper() + rest[1:]
        removed.add("greeting")
    for i in range(len(sentences) - 1, max(-1, len(sentences) - 4), -1):
        if _SIGNOFF.match(sentences[i]) and sum(len(s.split()) for s in sentences[i:]) <= _SIGNOFF_MAX_WORDS:
            del sentences[i:], gaps[i:]
            removed.add("signoff")
            break
    while sentences and (_TAIL.match(sentences[-1]) or _only_platform(sentences[-1])):
        removed.add("platform" if _PLATFORM.search(sentences[-1]) else "signoff")
        sentences.pop(), gaps.pop()
    answer = "".join(s + g for s, g in zip(sentences, gaps[:-1] + [""])) if sentences else ""
    if _PLATFORM.search(answer) or _PLATFORM.search(question):
        answer, question = _PLATFORM.sub("doctor", answer), _PLATFORM.sub("doctor", question)
        removed.add("platform")
    return question, answer.strip(), sorted(removed)


def _is_lead(sentence: str) -> bool:
    rest = _GREETING.sub("", sentence, count=1) if _GREETING.match(sentence) else sentence
    return not rest.strip() or bool(_LEAD.match(rest)) or _only_platform(rest)


def _only_platform(sentence: str) -> bool:
    """A sentence that is little more than the platform's name ("Chat Doctor.", "Visit iCliniq.")."""
    return bool(_PLATFORM.search(sentence)) and len(_PLATFORM.sub("", sentence).split()) <= 2
