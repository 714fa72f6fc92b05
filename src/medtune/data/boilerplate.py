"""Templated and link-list answers: a collection's boilerplate, learned from the data, not listed by hand.

A corpus built from a website carries its house style: MedQuAD's GHR answers to "What are the
treatments for X?" are all "These resources address the diagnosis or management of X:" and the same
list of resource names; GARD's symptom answers are one long paragraph about the Human Phenotype
Ontology with a few signs in between. A model tuned on them learns to print the template.

``Templates.fit`` finds them by counting: an answer is cut into sentences (and lines), each
sentence is known by its *opening* (its first six words, lower-cased), and an opening is a
template when at least ``min_documents`` different documents use it. An answer's *share* is the
part of its words that sit in template sentences; at ``max_share`` or more it is *templated*.
The same fitted ``Templates`` scores generated answers in evaluation ("share matching a learned
template"), fitted there on the run's training answers.

``is_link_list`` flags answers that are mostly a list of resources: URLs, or short list items
("- Genetic Testing Registry: …") with little prose around them.

``boilerplate_filter`` is the prepare step (``data.boilerplate_filter``): it drops link lists,
and keeps at most ``cap`` templated answers per template (the same stable sample every time), so
near-duplicate bodies such as MedQuAD's "This condition is inherited in an autosomal recessive
pattern…" (the same text in several hundred documents) stop dominating a mixture.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from medtune.data.clean import StepResult
from medtune.data.records import Record
from medtune.data.split import stable_fraction

OPENING_WORDS = 6
"""Words that name a sentence's opening."""
MIN_OPENING_WORDS = 2
"""Shorter sentences (a lone heading word) are never templates on their own."""
_SENTENCE = re.compile(r"(?<=[.!?:])\s+(?=[A-Z(\"'])")
_WORD = re.compile(r"[a-z0-9']+")
_URL = re.compile(r"https?://|www\.", re.IGNORECASE)
_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
LINK_ITEM_WORDS = 8
"""Longest resource name before a colon (and longest item that repeats across documents), in words."""
LINK_LIST_SHARE = 0.6
"""An answer whose lines are at least this share resource lines (and 3 or more of them) is a link list..."""
LINK_PROSE_WORDS = 40
"""...when it has fewer words of prose than this."""


def sentences(text: str) -> list[str]:
    """Lines, each cut into sentences (a sentence ends with . ! ? or : before a capital)."""
    return [s.strip() for line in text.splitlines() for s in _SENTENCE.split(line) if s.strip()]


def opening(sentence: str) -> str | None:
    """The sentence's first six words, lower-cased (None for a sentence under two words)."""
    words = _WORD.findall(sentence.lower())
    return " ".join(words[:OPENING_WORDS]) if len(words) >= MIN_OPENING_WORDS else None


@dataclass
class Templates:
    openings: set[str] = field(default_factory=set)
    """Sentence openings used by at least ``min_documents`` documents."""
    min_documents: int = 20
    max_share: float = 0.5
    documents: int = 0
    """Documents the templates were fitted on."""

    @classmethod
    def fit(cls, answers: Iterable[str], groups: Iterable[str], min_documents: int = 20, max_share: float = 0.5) -> Templates:
        """Openings shared by ``min_documents`` distinct groups (documents) of ``answers``."""
        users: dict[str, set[str]] = defaultdict(set)
        docs = set()
        for answer, group in zip(answers, groups, strict=True):
            docs.add(group)
            for s in sentences(answer):
                key = opening(s)
                if key:
                    users[key].add(group)
        found = {key for key, who in users.items() if len(who) >= min_documents}
        return cls(found, min_documents, max_share, len(docs))

    def share(self, text: str) -> float:
        """Part of the answer's words that sit in template sentences (0 for an empty answer)."""
        total = templated = 0
        for s in sentences(text):
            n = len(_WORD.findall(s.lower()))
            total += n
            templated += n if opening(s) in self.openings else 0
        return templated / total if total else 0.0

    def template_of(self, text: str) -> str | None:
        """The first template opening in the answer (None: no template sentence)."""
        return next((key for s in sentences(text) if (key := opening(s)) in self.openings), None)

    def matches(self, text: str) -> bool:
        """Templated: at least ``max_share`` of its words are template sentences."""
        return bool(self.openings) and self.share(text) >= self.max_share

    def to_dict(self) -> dict:
        return {"openings": sorted(self.openings), "min_documents": self.min_documents, "max_share": self.max_share,
                "documents": self.documents}


def is_link_list(text: str, templates: Templates | None = None) -> bool:
    """Mostly a list of resources: 3 or more list lines (2 or more naming a resource: a URL, "- Name:
    title", or an item that repeats across documents; the others short items), at least
    ``LINK_LIST_SHARE`` of the lines, and under ``LINK_PROSE_WORDS`` words of prose around them
    (template sentences, when ``templates`` are given, are not prose).
    A list of symptoms inside an explanation has its prose; a list of resource names has none."""
    lines = [line for line in text.splitlines() if line.strip()]
    prose = links = named = 0
    for line in lines:
        if _URL.search(line) or _resource_item(line, templates):
            links, named = links + 1, named + 1
            continue
        if _ITEM.match(line) and len(line.split()) <= LINK_ITEM_WORDS + 1:
            links += 1
            continue
        for s in _SENTENCE.split(line):
            if templates is None or opening(s) not in templates.openings:
                prose += len(_WORD.findall(s.lower()))
    return named >= 2 and links >= 3 and links >= LINK_LIST_SHARE * len(lines) and prose < LINK_PROSE_WORDS


def _resource_item(line: str, templates: Templates | None) -> bool:
    """A list item that names a resource: "- Name: title" (a short name before the colon, a short
    line), or a short item that repeats across documents ("- Diagnostic Tests")."""
    if not _ITEM.match(line):
        return False
    words = len(line.split()) - 1
    head = _SENTENCE.split(line, maxsplit=1)[0]
    named = head.rstrip().endswith(":") and len(head.split()) - 1 <= LINK_ITEM_WORDS and words <= 3 * LINK_ITEM_WORDS
    repeated = templates is not None and words <= LINK_ITEM_WORDS and opening(line) in templates.openings
    return named or repeated


def group_of(r: Record) -> str:
    """The document a record's answer belongs to (the record itself when its corpus has none)."""
    return f"{r.source}/{r.document}" if r.document else f"{r.source}/{r.id}"


def fit_records(records: list[Record], min_documents: int = 20, max_share: float = 0.5) -> Templates:
    """``Templates`` fitted on the records' answers, one vote per document."""
    return Templates.fit((r.answer for r in records), (group_of(r) for r in records), min_documents, max_share)


def boilerplate_filter(records: list[Record], min_documents: int = 20, max_share: float = 0.5, cap: int = 3,
                       seed: int = 0) -> StepResult:
    """Drop link lists (``link_list``) and templated answers beyond ``cap`` per template (``templated``).

    Templates are fitted on these records; which ``cap`` answers of a template stay is a stable
    hash of their ids (``seed``), so adding records never changes the choice for the others.
    The step's ``changed`` counts the templates found (``templates``)."""
    templates = fit_records(records, min_documents, max_share)
    result = StepResult([])
    result.changed["templates"] = len(templates.openings)
    by_template: dict[str, list[int]] = defaultdict(list)
    verdict: dict[int, str] = {}
    for i, r in enumerate(records):
        if is_link_list(r.answer, templates):
            verdict[i] = "link_list"
        elif templates.matches(r.answer):
            by_template[templates.template_of(r.answer)].append(i)
    for members in by_template.values():
        members.sort(key=lambda i: stable_fraction(seed, f"{records[i].source}/{records[i].id}"))
        verdict.update({i: "templated" for i in members[cap:]})
    for i, r in enumerate(records):
        if i in verdict:
            result.drop(verdict[i], r)
        else:
            result.records.append(r)
    return result
