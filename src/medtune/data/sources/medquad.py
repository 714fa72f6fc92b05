"""MedQuAD: consumer-health question–answer pairs from 12 NIH websites.

Two shapes:

* the original XML collection (abachaa/MedQuAD): a folder of folders of XML documents,
  ``<Document source url><Focus/><QAPairs><QAPair><Question qid qtype/><Answer/></QAPair>…``.
  The three MedlinePlus folders (``10_``, ``11_``, ``12_``) keep their questions but had their
  answers removed upstream for copyright; such pairs are always counted in ``skips`` (reason
  ``Answer: no answer (removed upstream ...)``), never a crash and never a record.
* the flat CSV/Parquet/Hub form: ``question``/``answer`` columns plus optional
  ``source``/``focus_area``/``qtype`` (column names matched case-insensitively), e.g.
  ``keivalya/MedQuad-MedicalQnADataset`` (``Question``, ``Answer``, ``qtype``) or
  ``lavita/MedQuAD``. A row whose answer is empty or null (the MedlinePlus rows of the flat
  copies) is counted in ``skips`` as ``empty answer`` under every policy, as in the XML.

Record ids are ``<source>-<collection>-<file stem>-<pid>`` for XML (qids repeat across files
upstream, so they are kept in ``meta["qid"]``) and
``<source>-<row>`` for the flat form. ``Record.document`` is ``<collection>-<file stem>`` (XML) or the
focus area (flat form), so the held-out split keeps one document's questions together.
"""

from __future__ import annotations

import re
from pathlib import Path

from tqdm.auto import tqdm

from medtune.data.errors import DataError, KnownGap, OnError, SkipLog
from medtune.data.files import field_text
from medtune.data.records import Record
from medtune.data.sources.rows import check_policy, collect, pick, source_name

LICENSE = "cc-by-4.0"
HUB_IDS = ("keivalya/MedQuad-MedicalQnADataset", "lavita/MedQuAD")

NO_ANSWER = "no answer (removed upstream for MedlinePlus copyright)"
EMPTY_ANSWER = "empty answer"
_ROOTS = ("Document", "doc", "DiseaseFile")
"""Root tags seen in the collection: almost all files use ``<Document>``; a few NINDS files use
the older ``<doc docid corpus><doctitle-focus><qaPairs><pair>`` schema, one CDC file
``<DiseaseFile fid>``."""
_BULLET = re.compile(r"[ \t]{2,}-[ \t]+")
_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def load(
    path: str,
    *,
    on_error: OnError = "raise",
    skips: SkipLog | None = None,
    limit: int | None = None,
    split: str = "train",
    source: str | None = None,
    license: str = LICENSE,
) -> list[Record]:
    """Records from a MedQuAD folder (searched recursively for ``*.xml``), one XML file, or a
    flat CSV/JSON/Parquet file or Hub id. Arguments as in ``chatdoctor.load``."""
    skips = skips if skips is not None else SkipLog()
    p = Path(path)
    if p.is_dir() or p.suffix.lower() == ".xml":
        check_policy(on_error)
        if not p.exists():
            raise DataError(str(p), "file does not exist")
        files = sorted(p.rglob("*.xml")) if p.is_dir() else [p]
        if not files:
            raise DataError(str(p), "no *.xml files in this folder")
        records: list[Record] = []
        first: dict[str, str] = {}  # record id → "file:line" of the pair that gave it
        for file in tqdm(files, desc=f"reading {p.name}", unit="file", disable=len(files) < 1000, leave=False):
            if limit is not None and len(records) >= limit:
                break
            try:
                pairs = _xml_records(file, source or "medquad", license, skips)
            except DataError as e:
                skips.handle(e, on_error)
                continue
            for line, record in pairs:
                if record.id in first:  # a repeated pid
                    repeat = DataError(str(file), f"record id {record.id!r} repeats {first[record.id]}", line=line, field="QAPair")
                    skips.handle(repeat, on_error)
                    continue
                first[record.id] = f"{file}:{line}"
                records.append(record)
        return records[:limit] if limit is not None else records
    source = source or source_name(path)

    def to_record(origin: str, line: int, row: dict) -> Record:
        q_col, a_col = pick(row, "question") or "question", pick(row, "answer") or "answer"
        question = field_text(origin, line, row, q_col)
        if a_col in row and (row[a_col] is None or (isinstance(row[a_col], str) and not row[a_col].strip())):
            raise KnownGap(origin, EMPTY_ANSWER, line=line, field=a_col)  # e.g. lavita/MedQuAD's MedlinePlus rows
        answer = field_text(origin, line, row, a_col)
        meta = {}
        for key in ("source", "focus_area", "qtype"):
            col = pick(row, key)
            value = field_text(origin, line, row, col, required=False) if col else None
            if value:
                meta[key] = value
        document = meta.get("focus_area")  # the flat copies' document: its focus (one document per focus upstream)
        return Record(id=f"{source}-{line}", source=source, question=question, answer=answer, license=license, meta=meta,
                      document=document)

    return collect(path, to_record, on_error=on_error, skips=skips, limit=limit, split=split)


def _xml_records(file: Path, source: str, license: str, skips: SkipLog) -> list[tuple[int | None, Record]]:
    """``(line, record)`` for the answered pairs of one MedQuAD document; unanswered pairs are counted in ``skips``."""
    from lxml import etree

    try:
        root = etree.parse(str(file), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
    except etree.XMLSyntaxError as e:
        line = e.position[0] if e.position else None
        raise DataError(str(file), f"XML does not parse ({e.msg})", line=line) from None
    except OSError as e:
        raise DataError(str(file), f"cannot read ({e})") from None
    if root.tag not in _ROOTS:
        raise DataError(str(file), f"root element is <{root.tag}>, expected <Document>", line=root.sourceline, field="Document")
    collection = root.get("source") or root.get("corpus") or file.parent.name
    doc_id = root.get("id") or root.get("docid") or root.get("fid")
    focus = _text(_first(root, "Focus", "doctitle-focus"))
    records = []
    for pair in (e for e in root.iter("QAPair", "pair")):
        q, a = _first(pair, "Question", "question"), _first(pair, "Answer", "answer")
        if q is None or not _text(q):
            skips.add(DataError(str(file), "empty or missing question", line=pair.sourceline, field="Question"))
            continue
        answer = _clean(_text(a))
        if not answer:
            removed = collection in ("ADAM", "MPlusDrugs", "MPlusHerbsSupplements") or file.parent.name.startswith(("10_", "11_", "12_"))
            skips.add(DataError(str(file), NO_ANSWER if removed else EMPTY_ANSWER, line=pair.sourceline, field="Answer"))
            continue
        qid = q.get("qid") or f"{doc_id}-{pair.get('pid')}"
        meta = {"qid": qid, "qtype": q.get("qtype"), "focus": focus, "collection": collection, "url": root.get("url")}
        record = Record(
            id=f"{source}-{collection}-{file.stem}-{pair.get('pid') or qid}",
            source=source,
            question=_clean(_text(q)),
            answer=answer,
            license=license,
            document=f"{collection}-{file.stem}",
            meta={k: v for k, v in meta.items() if v},
        )
        records.append((pair.sourceline, record))
    return records


def _first(element, *tags: str):
    for tag in tags:
        found = element.find(tag)
        if found is not None:
            return found
    return None


def _text(element) -> str:
    return "".join(element.itertext()).strip() if element is not None else ""


def _clean(text: str) -> str:
    """Undo the XML's indentation: inline "    - " bullets onto their own lines, one space
    between words, at most one blank line between paragraphs."""
    text = _BULLET.sub("\n- ", text)
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
