"""Documents from the corpora medtune reads, split into token-bounded, overlapping passages.

Readers (``IndexSourceConfig.kind``), each giving ``Document``s with a title, URL, source and licence:

* ``medquad``: the MedQuAD XML collection through its data adapter (``data.sources.medquad``); one
  document per XML file (its ``url`` and ``Focus`` as title), one section per answered question.
  Only the answers are indexed, never the questions: held-out questions stay held out.
* ``pubmedqa``: the expert set (``ori_pqal.json``) or the Hub/medagents shapes, parsed by
  ``data.sources.pubmedqa.parse``: one document per abstract (its contexts), titled by its question,
  linked to PubMed.
* ``rows``: any JSONL/JSON/CSV/Parquet file with a field mapping (``text``, ``title``, ``url``, ``id``).
* ``text``: a folder of ``.txt``/``.md`` files (title: the first Markdown heading, else the file name).

``split`` packs a section's sentences into passages of at most ``max_tokens`` encoder tokens; the
next passage starts with the last sentences of the one before, up to ``overlap`` tokens. A passage
never spans two sections. Bad input raises a ``DataError`` naming file:line:field, or is counted in
the ``SkipLog`` under ``on_error: skip``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medtune.core.config import IndexSourceConfig
from medtune.data.errors import DataError, SkipLog
from medtune.data.files import FORMATS, field_text
from medtune.data.sources.rows import check_policy, open_rows, source_name

TEXT_SUFFIXES = (".txt", ".md")
PUBMED_URL = "https://pubmed.ncbi.nlm.nih.gov/{}/"
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])|\n+")
_HEADING = re.compile(r"^#\s+(.+)$", re.MULTILINE)


@dataclass
class Document:
    id: str
    """Unique within the index: ``<source>:<document id>``."""
    title: str
    url: str | None
    source: str
    license: str
    sections: list[str] = field(default_factory=list)
    """Texts split separately (MedQuAD: one per answer)."""


@dataclass
class Passage:
    id: str
    """``<document id>#<n>``."""
    doc_id: str
    text: str
    title: str
    url: str | None
    source: str
    license: str

    def to_dict(self) -> dict:
        return asdict(self)


def read_documents(spec: IndexSourceConfig, skips: SkipLog | None = None) -> list[Document]:
    """The documents of one source, by its ``kind`` (``auto``: guessed from the path)."""
    check_policy(spec.on_error)
    skips = skips if skips is not None else SkipLog()
    path = Path(spec.path)
    if not path.exists():
        raise DataError(str(path), "file does not exist")
    kind = spec.kind if spec.kind != "auto" else guess_kind(path)
    return {"medquad": _medquad, "pubmedqa": _pubmedqa, "rows": _rows, "text": _text}[kind](spec, path, skips)


def guess_kind(path: Path) -> str:
    if path.is_dir():
        if next(path.rglob("*.xml"), None) is not None:
            return "medquad"
        if any(p.suffix.lower() in TEXT_SUFFIXES for p in path.rglob("*")):
            return "text"
        raise DataError(str(path), f"a folder without *.xml (MedQuAD) or {'/'.join(TEXT_SUFFIXES)} files")
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return "medquad"
    if suffix in TEXT_SUFFIXES:
        return "text"
    if suffix == ".json" and path.stat().st_size and b'"QUESTION"' in path.read_bytes()[:4096]:
        return "pubmedqa"
    if suffix in FORMATS:
        return "rows"
    raise DataError(str(path), f"cannot tell what this is (expected a folder, .xml, {', '.join(FORMATS)}, .txt or .md)")


def _medquad(spec: IndexSourceConfig, path: Path, skips: SkipLog) -> list[Document]:
    from medtune.data.sources import medquad

    source = spec.source or "medquad"
    records = medquad.load(str(path), on_error=spec.on_error, skips=skips, source=source, license=spec.license or medquad.LICENSE)
    docs: dict[str, Document] = {}
    for r in records:
        key = r.id.rsplit("-", 1)[0]  # <source>-<collection>-<file stem>: one XML document
        doc = docs.get(key)
        if doc is None:
            title = r.meta.get("focus") or (r.meta.get("url") or key).split("://")[-1]  # a few documents have no Focus
            doc = docs[key] = Document(f"{source}:{key.removeprefix(source + '-')}", title, r.meta.get("url"), source, r.license)
        doc.sections.append(r.answer)
    return list(docs.values())


def _pubmedqa(spec: IndexSourceConfig, path: Path, skips: SkipLog) -> list[Document]:
    from medtune.data.sources import pubmedqa

    source = spec.source or "pubmedqa"
    origin, rows = open_rows(str(path), on_error=spec.on_error, skips=skips)
    docs = []
    for line, row in rows:
        try:
            item = pubmedqa.parse(origin, line, row)
        except DataError as e:
            skips.handle(e, spec.on_error)
            continue
        if not item["contexts"]:
            skips.handle(DataError(origin, "no context text", line=line, field="CONTEXTS"), spec.on_error)
            continue
        url = PUBMED_URL.format(item["id"]) if item["id"].isdigit() else None
        docs.append(Document(f"{source}:{item['id'] or line}", item["question"], url, source, spec.license or pubmedqa.LICENSE,
                             [" ".join(item["contexts"])]))
    return docs


def _rows(spec: IndexSourceConfig, path: Path, skips: SkipLog) -> list[Document]:
    source = spec.source or source_name(str(path))
    origin, rows = open_rows(str(path), on_error=spec.on_error, skips=skips)
    docs, seen = [], {}
    for line, row in rows:
        try:
            text = field_text(origin, line, row, spec.text)
            title = (field_text(origin, line, row, spec.title, required=False) if spec.title and spec.title in row else None)
            url = field_text(origin, line, row, spec.url, required=False) if spec.url and spec.url in row else None
            rid = field_text(origin, line, row, spec.id, required=False) if spec.id and spec.id in row else None
            rid = rid or str(line)
            if rid in seen:
                raise DataError(origin, f"document id {rid!r} repeats line {seen[rid]}", line=line, field=spec.id)
        except DataError as e:
            skips.handle(e, spec.on_error)
            continue
        seen[rid] = line
        docs.append(Document(f"{source}:{rid}", title or f"{source} {rid}", url, source, spec.license or "unknown", [text]))
    return docs


def _text(spec: IndexSourceConfig, path: Path, skips: SkipLog) -> list[Document]:
    source = spec.source or source_name(str(path))
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES) if path.is_dir() else [path]
    docs = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as e:
            skips.handle(DataError(str(file), f"undecodable bytes ({e.reason} at byte {e.start})"), spec.on_error)
            continue
        if not text.strip():
            skips.handle(DataError(str(file), "file is empty"), spec.on_error)
            continue
        heading = _HEADING.search(text)
        title = heading.group(1).strip() if heading else file.stem.replace("_", " ").replace("-", " ")
        rel = file.relative_to(path) if path.is_dir() else Path(file.name)
        sections = [s for s in re.split(r"\n(?=#{1,6}\s)", text) if s.strip()]  # Markdown sections split apart
        docs.append(Document(f"{source}:{rel.as_posix()}", title, file.resolve().as_uri(), source, spec.license or "unknown", sections))
    return docs


# --- splitting -----------------------------------------------------------------------------------


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def split(docs: list[Document], count_tokens: Callable[[list[str]], list[int]], max_tokens: int, overlap: int) -> Iterator[Passage]:
    """Passages of every document's sections (``count_tokens``: token lengths of a batch of texts)."""
    for doc in docs:
        seen: set[str] = set()  # a passage repeated within a document (MedQuAD repeats answers) is kept once
        for section in doc.sections:
            sents = sentences(section)
            if not sents:
                continue
            for text in pack(sents, count_tokens(sents), max_tokens, overlap):
                if text not in seen:
                    yield Passage(f"{doc.id}#{len(seen)}", doc.id, text, doc.title, doc.url, doc.source, doc.license)
                    seen.add(text)


def pack(sents: list[str], lengths: list[int], max_tokens: int, overlap: int) -> list[str]:
    """Sentences packed into texts of at most ``max_tokens``; a longer sentence is cut by words."""
    pieces: list[tuple[str, int]] = []
    for s, n in zip(sents, lengths, strict=True):
        if n <= max_tokens:
            pieces.append((s, n))
            continue
        words = s.split()
        per = max(1, int(len(words) * max_tokens / n * 0.9))  # words per cut, with room for sub-word tokens
        pieces.extend((" ".join(words[i:i + per]), max_tokens) for i in range(0, len(words), per))
    out: list[str] = []
    current: list[tuple[str, int]] = []
    for piece in pieces:
        if current and sum(n for _, n in current) + piece[1] > max_tokens:
            out.append(" ".join(s for s, _ in current))
            carry: list[tuple[str, int]] = []
            for s, n in reversed(current):  # the overlap: trailing whole sentences up to `overlap` tokens
                kept = sum(m for _, m in carry) + n
                if kept > overlap or kept + piece[1] > max_tokens:
                    break
                carry.insert(0, (s, n))
            current = carry
        current.append(piece)
    if current:
        out.append(" ".join(s for s, _ in current))
    return out
