"""Property-based fuzzing of every data adapter (issue 17): real files in each adapter's formats,
valid rows mixed with malformed ones, loaded through ``medtune.data.prepare.load_source`` under
``on_error: raise`` and ``skip``.

Properties, for every input:
* under ``raise`` only a ``DataError`` escapes, and it names the file (and the line, for a row);
* under ``skip`` nothing raises unless the *file* is unreadable as a whole (empty, a truncated JSON
  document, a corrupt Parquet file), and every row is accounted for:
  records out + skipped + left out = rows in;
* no example runs past the profile's deadline (no pathological regex, no runaway recursion).
The whole ``prepare()`` pipeline on fuzzed generic input keeps in - dropped + added = out per step.

Profiles (``tests/fuzz_profiles.py``): ``ci`` by default, ``HYPOTHESIS_PROFILE=fuzz`` for thousands
of examples. The regression tests at the end are the smallest failing inputs the fuzzing found.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import fuzz_profiles  # noqa: F401  (registers and loads the hypothesis profile)
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medtune.core.config import DataConfig, SourceConfig
from medtune.data.errors import DataError, SkipLog
from medtune.data.prepare import load_source, prepare
from medtune.data.records import read_jsonl, write_jsonl

pytestmark = pytest.mark.timeout(600)

# --- values ------------------------------------------------------------------------------------

HUGE = [
    "x" * 200_000,
    "word " * 40_000,
    "a" + " " * 100_000 + "b",
    "a" + "\n" * 50_000 + "b",
    "a" + " \n" * 50_000 + "b",
    "Doctor:" + " " * 30_000 + "x",
    "Patient: " + "\n" * 30_000 + "Doctor: " + " " * 30_000 + "ok",
    "*" * 60_000 + ":",
    "." * 100_000,
    "Hi. " * 30_000,
    "Regards, " * 20_000,
    "thanks for " * 20_000,
]
CONTROL = st.text(st.characters(categories=["Cc", "Cf", "Zl", "Zp"]), min_size=1, max_size=8)
GOOD_TEXT = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from("abcdefghijklmnopqrstuvwxyzÅéß中"),
    st.text(st.sampled_from("abcdefghij klmnop.,?!\n'é中"), max_size=40),
)
EVIL_TEXT = st.one_of(
    st.text(max_size=30),
    CONTROL,
    st.sampled_from(HUGE),
    st.sampled_from(["\ufeffquestion", "line one\r\nline two", "\ud800", "a\udfffb", "\x00", "\u2028", "\x85", "NaN", " "]),
    st.builds(lambda a, c, b: a + c + b, GOOD_TEXT, CONTROL, GOOD_TEXT),
)


def _nest(depth: int, leaf=1):
    for _ in range(depth):
        leaf = [leaf]
    return leaf


BAD_VALUE = st.one_of(
    st.none(),
    st.sampled_from(["", "   ", "\t\n"]),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.one_of(st.integers(), GOOD_TEXT, st.none()), max_size=3),
    st.dictionaries(GOOD_TEXT, st.one_of(st.integers(), GOOD_TEXT), max_size=3),
    st.integers(1, 300).map(_nest),
    EVIL_TEXT,
)


@st.composite
def corrupt(draw, row: dict) -> dict:
    """A row with 1-3 of: a field set to a bad value, a field removed, a stray field, a renamed key."""
    row = dict(row)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "set", "delete", "add", "case"]))
        keys = list(row)
        if op == "set" and keys:
            row[draw(st.sampled_from(keys))] = draw(BAD_VALUE)
        elif op == "delete" and keys:
            del row[draw(st.sampled_from(keys))]
        elif op == "case" and keys:
            key = draw(st.sampled_from(keys))
            row[key.swapcase()] = row.pop(key)
        else:
            row[draw(st.sampled_from(["id", "extra", "", "question ", "realidx", "options", "QUESTION"]))] = draw(BAD_VALUE)
    return row


def rows_of(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Valid rows, and corrupted copies of valid rows."""
    return st.lists(st.one_of(valid, valid.flatmap(corrupt)), max_size=8)


# --- rows per adapter (the published shapes) ---------------------------------------------------

OPTIONS = st.dictionaries(st.sampled_from("ABCDE"), GOOD_TEXT, min_size=2, max_size=5)


@st.composite
def mcq_row(draw) -> dict:
    options = draw(OPTIONS)
    letter = draw(st.sampled_from(sorted(options)))
    text = options[letter]
    shape = draw(st.sampled_from(["dict", "keyvalue", "list"]))
    if shape == "keyvalue":
        shown = [{"key": k, "value": v} for k, v in options.items()]
    elif shape == "list":  # lettered A, B, ... in order
        shown, letter = list(options.values()), "ABCDE"[list(options).index(letter)]
    else:
        shown = options
    row = {"question": draw(GOOD_TEXT), "options": shown, "answer_idx": letter, "realidx": draw(st.integers(0, 10**6))}
    if draw(st.booleans()):
        row["answer"] = text
    return row


@st.composite
def medmcqa_row(draw) -> dict:
    if draw(st.integers(0, 3)) == 0:
        return draw(mcq_row())
    row = {c: draw(GOOD_TEXT) for c in ("question", "opa", "opb", "opc", "opd", "exp", "subject_name")}
    row["cop"] = draw(st.integers(0, 3))
    row["id"] = draw(st.uuids()).hex
    return row


@st.composite
def pubmedqa_row(draw) -> dict:
    decision = draw(st.sampled_from(["yes", "no", "maybe"]))
    contexts = draw(st.lists(GOOD_TEXT, min_size=1, max_size=3))
    shape = draw(st.sampled_from(["ori", "hub", "medagents"]))
    if shape == "ori":
        return {"QUESTION": draw(GOOD_TEXT), "CONTEXTS": contexts, "final_decision": decision, "LONG_ANSWER": draw(GOOD_TEXT)}
    if shape == "hub":
        return {"pubid": draw(st.integers(1, 10**8)), "question": draw(GOOD_TEXT), "context": {"contexts": contexts},
                "long_answer": draw(GOOD_TEXT), "final_decision": decision}
    return {"question": "\n".join([*contexts, draw(GOOD_TEXT)]), "options": {"A": "yes", "B": "no", "C": "maybe"},
            "answer_idx": "ABC"[["yes", "no", "maybe"].index(decision)], "answer_rationale": draw(GOOD_TEXT),
            "realidx": draw(st.integers())}


@st.composite
def reasoning_row(draw) -> dict:
    if draw(st.booleans()):
        return {"Question": draw(GOOD_TEXT), "Complex_CoT": draw(GOOD_TEXT), "Response": draw(GOOD_TEXT)}
    return draw(pubmedqa_row())


LABELS = st.sampled_from(["Doctor", "Patient", "Dr.", "**Doctor**", "Patient's mother", "Nurse", "Family member", "Speaker"])


@st.composite
def notechat_row(draw) -> dict:
    turns = draw(st.lists(st.tuples(LABELS, GOOD_TEXT), min_size=1, max_size=6))
    form = draw(st.sampled_from(["text", "strings", "objects"]))
    if form == "text":
        value = "\n".join(f"{label}: {text}" for label, text in turns)
    elif form == "strings":
        value = [f"{label}: {text}" for label, text in turns]
    else:
        value = [{"speaker": label, "text": text} for label, text in turns]
    return {"conversation": value, "data": draw(GOOD_TEXT)}


@st.composite
def messages_row(draw) -> dict:
    roles = st.sampled_from(["user", "assistant", "system", "human", "gpt"])
    if draw(st.booleans()):
        turns = [{"role": r, "content": t} for r, t in draw(st.lists(st.tuples(roles, GOOD_TEXT), min_size=1, max_size=5))]
    else:
        turns = [{"from": r, "value": t} for r, t in draw(st.lists(st.tuples(roles, GOOD_TEXT), min_size=1, max_size=5))]
    return {"conversations": turns}


QA = st.fixed_dictionaries({"question": GOOD_TEXT, "answer": GOOD_TEXT}, optional={"id": st.uuids().map(str), "topic": GOOD_TEXT})
INSTRUCTION = st.fixed_dictionaries({"instruction": GOOD_TEXT, "input": GOOD_TEXT, "output": GOOD_TEXT})
MEDQUAD_FLAT = st.fixed_dictionaries(
    {"Question": GOOD_TEXT, "Answer": st.one_of(GOOD_TEXT, st.just(""))}, optional={"qtype": GOOD_TEXT, "focus_area": GOOD_TEXT}
)


@dataclass(frozen=True)
class Kind:
    kind: str
    rows: st.SearchStrategy
    options: dict
    fields: dict


KINDS = {
    "generic": Kind("generic", QA, {}, {}),
    "generic-messages": Kind("generic", messages_row(), {"messages": "conversations"}, {}),
    "chatdoctor": Kind("chatdoctor", INSTRUCTION, {"strip_boilerplate": True}, {}),
    "flashcards": Kind("flashcards", INSTRUCTION, {}, {}),
    "medqa": Kind("medqa", mcq_row(), {"answer_format": "letter_text"}, {}),
    "mcq": Kind("mcq", mcq_row(), {}, {}),
    "medmcqa": Kind("medmcqa", medmcqa_row(), {"answer_format": "letter_explanation"}, {}),
    "pubmedqa": Kind("pubmedqa", pubmedqa_row(), {}, {}),
    "reasoning": Kind("reasoning", reasoning_row(), {}, {}),
    "notechat": Kind("notechat", notechat_row(), {"keep_note": True}, {}),
    "medquad": Kind("medquad", MEDQUAD_FLAT, {}, {}),
}

# --- files -------------------------------------------------------------------------------------


@dataclass
class Fuzzed:
    name: str
    data: bytes
    rows: int
    """Rows in the file as its format counts them (JSONL lines, JSON list items, CSV records)."""
    whole_file_bad: bool = False
    """The file as a whole is unreadable (empty, truncated JSON document, corrupt Parquet)."""


RAW_LINES = st.one_of(
    st.sampled_from([b"{", b'{"question": "a", "answer": ', b"[1, 2]", b"42", b'"text"', b"null", b"true", b"{}x", b"\x00\x00",
                     b"\xff\xfe\xfd", b"\xc3\x28", '{"question": "caf\u00e9", "answer": "ok"}'.encode("latin-1"),
                     b'{"question": "\\ud800", "answer": "\\udfff"}', b'{"question": "a", "answer": "b", "question": null}',
                     b"\xef\xbb\xbf" + b'{"question": "bom", "answer": "mid-file BOM"}', b'{"answer": "x", "question": NaN}']),
    st.integers(100, 200_000).map(lambda d: b"[" * d + b"]" * d),
    st.integers(100, 200_000).map(lambda d: b'{"question": ' + b"[" * d + b"]" * d + b', "answer": "x"}'),
    st.integers(4_400, 20_000).map(lambda n: b'{"question": ' + b"9" * n + b', "answer": "x"}'),
    st.binary(min_size=1, max_size=20).filter(lambda b: b"\n" not in b and b"\r" not in b and b.removeprefix(BOM).strip()),
)


BOM = b"\xef\xbb\xbf"


def _dumps(row: dict, ascii_only: bool) -> bytes:
    return json.dumps(row, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def jsonl_file(draw, rows: list[dict]) -> Fuzzed:
    ascii_only = draw(st.booleans())
    lines = [_dumps(r, ascii_only) for r in rows]
    for _ in range(draw(st.integers(0, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(RAW_LINES))
    n = len(lines)
    if lines and draw(st.booleans()):  # a download cut short: the last line loses its end
        lines[-1] = lines[-1][: draw(st.integers(1, len(lines[-1])))]
        if not lines[-1].removeprefix(BOM).strip():  # (a BOM alone is a blank line)
            lines[-1] = b"{"
    for _ in range(draw(st.integers(0, 2))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from([b"", b"   ", b"\t"])))
    data = draw(st.sampled_from([b"\n", b"\r\n", b"\r"])).join(lines) + draw(st.sampled_from([b"", b"\n", b"\r\n"]))
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return Fuzzed("rows.jsonl", data, n, whole_file_bad=n == 0)


@st.composite
def json_file(draw, rows: list[dict]) -> Fuzzed:
    items: list = list(rows)
    for _ in range(draw(st.integers(0, 2))):
        not_an_object = st.one_of(st.integers(), GOOD_TEXT, st.none(), st.lists(st.integers(), max_size=2))
        items.insert(draw(st.integers(0, len(items))), draw(not_an_object))
    form = draw(st.sampled_from(["list", "mapping", "data"]))
    ascii_only = draw(st.booleans())
    if form == "mapping" and all(isinstance(i, dict) for i in items) and items:
        keys = draw(st.lists(st.sampled_from(["1", "2", "3", "10", "x", "data"]), min_size=len(items), max_size=len(items)))
        body = b"{" + b", ".join(_dumps(k, ascii_only) + b": " + _dumps(v, ascii_only) for k, v in zip(keys, items, strict=True)) + b"}"
    elif form == "data":
        body = b'{"version": 1, "data": [' + b", ".join(_dumps(i, ascii_only) for i in items) + b"]}"
    else:
        body = b"[" + b",\n".join(_dumps(i, ascii_only) for i in items) + b"]"
    bad = False
    if draw(st.integers(0, 5)) == 0:  # truncated download
        body, bad = body[: draw(st.integers(0, len(body) - 1))], True
    elif draw(st.integers(0, 9)) == 0:
        body, bad = b"[" * 100_000 + b"]" * 100_000, True
    if draw(st.booleans()):
        body = b"\xef\xbb\xbf" + body
    if draw(st.booleans()):
        body = body.replace(b"\n", b"\r\n")
    try:  # one JSON document: text that is not UTF-8 anywhere in it (an unpaired surrogate written raw) spoils the whole file
        body.decode("utf-8")
    except UnicodeDecodeError:
        bad = True
    return Fuzzed("rows.json", body, len(items), whole_file_bad=bad or not body.strip(b"\xef\xbb\xbf \n\r"))


def _cell(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


@st.composite
def csv_file(draw, rows: list[dict]) -> Fuzzed:
    header = list(dict.fromkeys(k for r in rows for k in r)) or ["question"]
    out = io.StringIO(newline="")
    # csv quotes a cell holding a line break only if the break is in its lineterminator: with "\n",
    # quote every cell, or a bare "\r" in a cell would start a new record for every CSV reader
    ending, quoting = draw(st.sampled_from([("\n", csv.QUOTE_ALL), ("\r\n", csv.QUOTE_MINIMAL)]))
    writer = csv.writer(out, lineterminator=ending, quoting=quoting)
    writer.writerow(header)
    n = 0
    for r in rows:
        cells = [_cell(r.get(k)) for k in header]
        cut = draw(st.integers(0, 5))
        if cut == 0:
            cells = cells[: draw(st.integers(1, len(cells)))]  # a short row
        elif cut == 1:
            cells += [draw(GOOD_TEXT)]  # a long row
        writer.writerow(cells)
        n += 1
    text = out.getvalue()
    if draw(st.booleans()):
        text = "\ufeff" + text
    data = text.encode("utf-8", "surrogatepass")
    if rows and draw(st.integers(0, 4)) == 0:  # one row in another encoding
        data += "caf\u00e9,na\u00efve\n".encode("latin-1")
        n += 1
    return Fuzzed("rows.csv", data, n)


@st.composite
def parquet_file(draw, rows: list[dict]) -> Fuzzed:
    import pyarrow as pa
    import pyarrow.parquet as pq

    header = list(dict.fromkeys(k for r in rows for k in r)) or ["question"]

    def clean(v):
        v = _cell(v) if v is not None else None
        return v.encode("utf-8", "replace").decode("utf-8") if isinstance(v, str) else v  # Arrow holds valid UTF-8 only

    table = pa.table({k: pa.array([clean(r.get(k)) for r in rows], pa.string()) for k in header})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    data, bad = sink.getvalue(), False
    if draw(st.integers(0, 5)) == 0:
        data, bad = data[: draw(st.integers(1, len(data) - 1))], True
    return Fuzzed("rows.parquet", data, len(rows), whole_file_bad=bad)


FORMATS = {"jsonl": jsonl_file, "json": json_file, "csv": csv_file, "parquet": parquet_file}


@st.composite
def fuzzed_file(draw, kind: Kind) -> Fuzzed:
    rows = draw(rows_of(kind.rows))
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    if draw(st.integers(0, 30)) == 0:
        return Fuzzed(f"rows.{fmt}", draw(st.sampled_from([b"", b"\n", b"  \r\n"])), 0, whole_file_bad=True)
    return draw(FORMATS[fmt](rows))


# --- the properties ----------------------------------------------------------------------------


def check_load(src: SourceConfig, path: Path, rows_in: int, whole_file_bad: bool) -> None:
    """Both policies on one file: only DataError naming the file; under skip every row accounted for."""
    outcomes = {}
    for policy in ("raise", "skip"):
        skips = SkipLog()
        try:
            records = load_source(src, policy, skips)
        except DataError as e:
            assert e.file.startswith(str(path)), e
            assert str(e).startswith(e.file), e
            if not whole_file_bad:
                assert policy == "raise", f"skip raised on a row-level problem: {e}"
                assert (e.line is not None and e.line >= 1) or e.field, f"neither line nor field in {e}"
            outcomes[policy] = e
            continue
        assert not whole_file_bad or rows_in == 0, f"{policy}: a broken file gave {len(records)} records and no error"
        left_out = sum(skips.left_out.values())
        assert len(records) + skips.total + left_out == rows_in, (
            f"{policy}: {len(records)} records + {skips.total} skipped + {left_out} left out != {rows_in} rows; {skips.to_dict()}"
        )
        assert len({r.id for r in records}) == len(records), "duplicate record ids"
        outcomes[policy] = records
    if isinstance(outcomes["raise"], list):
        assert [r.id for r in outcomes["raise"]] == [r.id for r in outcomes["skip"]]


def _run(kind: Kind, fuzzed: Fuzzed) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / fuzzed.name
        path.write_bytes(fuzzed.data)
        src = SourceConfig(kind=kind.kind, path=str(path), options=kind.options, fields=kind.fields)
        check_load(src, path, fuzzed.rows, fuzzed.whole_file_bad)


def _make(name: str):
    kind = KINDS[name]

    @given(fuzzed=fuzzed_file(kind))
    def test(fuzzed: Fuzzed) -> None:
        _run(kind, fuzzed)

    test.__name__ = f"test_fuzz_{name.replace('-', '_')}"
    return test


for _name in KINDS:
    globals()[f"test_fuzz_{_name.replace('-', '_')}"] = _make(_name)


# --- medquad's XML folder ----------------------------------------------------------------------


@st.composite
def xml_pair(draw) -> tuple[str, bool]:
    """One ``<QAPair>`` and whether it has both a question and an answer."""
    q = draw(st.one_of(GOOD_TEXT, st.just(""), st.none()))
    a = draw(st.one_of(GOOD_TEXT, st.just(""), st.none()))
    pid = draw(st.integers(1, 4))
    from xml.sax.saxutils import escape

    question = "" if q is None else f'<Question qid="{pid}" qtype="x">{escape(q)}</Question>'
    answer = "" if a is None else f"<Answer>{escape(a)}</Answer>"
    return f'<QAPair pid="{pid}">{question}{answer}</QAPair>', bool(q and q.strip())


@st.composite
def xml_file(draw) -> tuple[bytes, int]:
    """A MedQuAD document (or a broken one) and the rows it holds: its pairs, or 1 for a file that is unreadable as a whole."""
    pairs = draw(st.lists(xml_pair(), max_size=5))
    body = "".join(p for p, _ in pairs)
    root = draw(st.sampled_from(["Document", "Document", "doc", "Other"]))
    head = f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} id="d1" source="NIH" url="u">'
    text = f"{head}<Focus>f</Focus><QAPairs>{body}</QAPairs></{root}>"
    data = text.encode("utf-8", "replace")
    broken = draw(st.integers(0, 6))
    if broken == 0:
        return data[: draw(st.integers(0, len(data) - 1))], 1
    if broken == 1:
        return b"<Document>" + b"<a>" * 300 + b"\xff\xfe" + b"</a>" * 300 + b"</Document>", 1
    if broken == 2:
        return b'<!DOCTYPE d [<!ENTITY e "x">]><Document>&e;&undefined;</Document>', 1
    return data, (1 if root == "Other" else len(pairs))


@given(files=st.lists(xml_file(), min_size=1, max_size=4))
def test_fuzz_medquad_xml(files: list[tuple[bytes, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "MedQuAD"
        for i, (data, _) in enumerate(files):
            sub = folder / f"{i % 2 + 1}_Collection"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"{i:04d}_doc.xml").write_bytes(data)
        src = SourceConfig(kind="medquad", path=str(folder))
        for policy in ("raise", "skip"):
            skips = SkipLog()
            try:
                records = load_source(src, policy, skips)
            except DataError as e:
                assert policy == "raise" and e.file.startswith(str(folder)) and e.file.endswith(".xml"), e
                continue
            assert len(records) + skips.total == sum(n for _, n in files), skips.to_dict()
            assert len({r.id for r in records}) == len(records)


# --- the whole prepare stage -------------------------------------------------------------------


@given(fuzzed=fuzzed_file(KINDS["generic"]), scrub=st.booleans(), near=st.booleans())
def test_fuzz_prepare_counts_every_record(fuzzed: Fuzzed, scrub: bool, near: bool) -> None:
    """Through prepare(): rows in = loaded + skipped, each step keeps in - dropped + added = out per
    source, the split holds what the last step kept, and the prepared records can be written and read back."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / fuzzed.name
        path.write_bytes(fuzzed.data)
        cfg = DataConfig(sources=[SourceConfig(path=str(path))], on_error="skip", scrub_pii=scrub, near_dedupe=near, eval_fraction=0.2)
        try:
            prepared = prepare(cfg)
        except DataError as e:
            assert fuzzed.whole_file_bad and e.file == str(path), e
            return
        except ValueError as e:
            assert "no training records left" in str(e), e
            return
        card = prepared.card
        (source,) = card["sources"]
        assert source["records_loaded"] + source["skipped"]["total"] == fuzzed.rows
        records = source["records_loaded"]
        for step in card["steps"]:
            assert step["name"] == "decontaminate" or step["records_in"] == records, step["name"]  # (that one: the train side)
            for name, c in step["sources"].items():
                assert c["in"] - c["dropped"] + c["added"] == c["out"], (step["name"], name, c)
            assert sum(c["out"] for c in step["sources"].values()) == step["records_out"]
            records = step["records_out"]
        decontaminated = card["steps"][-1]["name"] == "decontaminate"  # runs on the train side of the split
        assert (len(prepared.train) if decontaminated else len(prepared.train) + len(prepared.eval)) == records
        write_jsonl(Path(tmp) / "train.jsonl", prepared.train)
        assert [r.id for r in read_jsonl(Path(tmp) / "train.jsonl")] == [r.id for r in prepared.train]


# --- regressions: the smallest failing inputs the fuzzing found --------------------------------


def _load(tmp: Path, name: str, data: bytes, policy: str, kind: str = "generic", **options):
    path = tmp / name
    path.write_bytes(data)
    skips = SkipLog()
    return load_source(SourceConfig(kind=kind, path=str(path), options=options), policy, skips), skips


ROW = b'{"question": "q", "answer": "a"}'


def test_jsonl_byte_order_mark_is_not_a_bad_row(tmp_path):
    records, skips = _load(tmp_path, "bom.jsonl", b"\xef\xbb\xbf" + ROW + b"\n", "raise")
    assert [r.question for r in records] == ["q"] and skips.total == 0


def test_jsonl_of_only_a_byte_order_mark_is_empty(tmp_path):
    with pytest.raises(DataError, match="file is empty"):
        _load(tmp_path, "bom.jsonl", b"\xef\xbb\xbf\n", "skip")


@pytest.mark.parametrize(
    "line, reason",
    [(b"[" * 100_000 + b"]" * 100_000, "nested too deeply"), (b'{"question": ' + b"9" * 5000 + b', "answer": "a"}', "digits")],
)
def test_jsonl_line_that_json_cannot_convert_is_a_row_error(tmp_path, line, reason):
    with pytest.raises(DataError, match=rf"bad\.jsonl:2: malformed JSON.*{reason}"):
        _load(tmp_path, "bad.jsonl", ROW + b"\n" + line + b"\n", "raise")
    records, skips = _load(tmp_path, "bad.jsonl", ROW + b"\n" + line + b"\n", "skip")
    assert len(records) == 1 and skips.total == 1


def test_unpaired_surrogate_escape_is_a_row_error_not_a_crash_when_written(tmp_path):
    data = ROW + b'\n{"question": "\\ud800", "answer": "a"}\n'
    with pytest.raises(DataError, match=r"bad\.jsonl:2: .*unpaired"):
        _load(tmp_path, "bad.jsonl", data, "raise")
    records, skips = _load(tmp_path, "bad.jsonl", data, "skip")
    assert len(records) == 1 and skips.total == 1
    write_jsonl(tmp_path / "out.jsonl", records)


def test_json_list_item_that_is_not_an_object_is_skipped_under_skip(tmp_path):
    records, skips = _load(tmp_path, "rows.json", b"[" + ROW + b", 42]", "skip")
    assert len(records) == 1 and skips.total == 1
    with pytest.raises(DataError, match=r"rows\.json:2: record 2 is a int"):
        _load(tmp_path, "rows.json", b"[" + ROW + b", 42]", "raise")


def test_json_nested_too_deeply_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"deep\.json: malformed JSON \(nested too deeply\)"):
        _load(tmp_path, "deep.json", b"[" * 100_000 + b"]" * 100_000, "skip")


def test_json_object_with_a_repeated_id_counts_the_overwritten_record(tmp_path):
    data = b'{"1": ' + ROW + b', "1": {"question": "q2", "answer": "a2"}}'
    records, skips = _load(tmp_path, "ori.json", data, "skip")
    assert [r.question for r in records] == ["q2"] and skips.total == 1
    with pytest.raises(DataError, match="id '1' repeats"):
        _load(tmp_path, "ori.json", data, "raise")


def test_csv_field_longer_than_csv_default_limit_is_read(tmp_path):
    records, _ = _load(tmp_path, "long.csv", b"question,answer\nq," + b"a" * 200_000 + b"\n", "raise")
    assert len(records[0].answer) == 200_000


def test_csv_row_in_another_encoding_is_that_rows_error(tmp_path):
    data = b"question,answer\nq,a\ncaf\xe9,na\xefve\nq2,a2\n"
    records, skips = _load(tmp_path, "mixed.csv", data, "skip")
    assert [r.question for r in records] == ["q", "q2"] and skips.total == 1
    with pytest.raises(DataError, match=r"mixed\.csv:3: field 'question' undecodable"):
        _load(tmp_path, "mixed.csv", data, "raise")


def test_truncated_parquet_is_a_data_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"question": ["q"], "answer": ["a"]}), tmp_path / "full.parquet")
    data = (tmp_path / "full.parquet").read_bytes()
    with pytest.raises(DataError, match=r"cut\.parquet: not a readable Parquet file"):
        _load(tmp_path, "cut.parquet", data[: len(data) // 2], "skip")


def test_repeated_record_id_is_named_at_its_line(tmp_path):
    row = b'{"question": "q", "options": {"A": "x", "B": "y"}, "answer_idx": "A", "realidx": 0}\n'
    with pytest.raises(DataError, match=r"mcq\.jsonl:2: field 'id' record id 'mcq-0' repeats line 1"):
        _load(tmp_path, "mcq.jsonl", row + row.replace(b'"q"', b'"q2"'), "raise", kind="mcq")
    records, skips = _load(tmp_path, "mcq.jsonl", row + row.replace(b'"q"', b'"q2"'), "skip", kind="mcq")
    assert len(records) == 1 and skips.total == 1


def test_medquad_xml_repeated_pair_id_is_counted(tmp_path):
    pair = '<QAPair pid="1"><Question qid="1">q</Question><Answer>a</Answer></QAPair>'
    folder = tmp_path / "MedQuAD" / "1_NIH"
    folder.mkdir(parents=True)
    (folder / "0001.xml").write_text(f'<Document id="d" source="NIH"><QAPairs>{pair}{pair}</QAPairs></Document>')
    skips = SkipLog()
    records = load_source(SourceConfig(kind="medquad", path=str(tmp_path / "MedQuAD")), "skip", skips)
    assert len(records) == 1 and skips.total == 1
    with pytest.raises(DataError, match=r"0001\.xml:1: field 'QAPair' record id .* repeats"):
        load_source(SourceConfig(kind="medquad", path=str(tmp_path / "MedQuAD")), "raise", SkipLog())


@pytest.mark.timeout(60)
def test_notechat_long_run_of_blank_lines_is_read_in_linear_time(tmp_path):
    """Before: ``^\\s*\\**\\s*`` took 25 s for 1,000 newlines, and grew with their cube."""
    conversation = "Patient: my head hurts" + "\n" * 50_000 + "(pause)\nDoctor: rest and drink water"  # blank lines, then no label
    row = json.dumps({"conversation": conversation}).encode()
    records, _ = _load(tmp_path, "notechat.jsonl", row + b"\n", "raise", kind="notechat")
    assert [m["role"] for m in records[0].messages] == ["user", "assistant"]


@pytest.mark.timeout(60)
def test_chatdoctor_long_run_of_spaces_is_stripped_in_linear_time(tmp_path):
    """Before: the sentence splitter looked for a line break from every position of a run of
    blanks: 10 s for 100,000 spaces."""
    row = json.dumps({"instruction": "", "input": "q", "output": "Hi. Rest" + " " * 300_000 + "and drink water."}).encode()
    records, _ = _load(tmp_path, "chatdoctor.jsonl", row + b"\n", "raise", kind="chatdoctor", strip_boilerplate=True)
    assert records[0].answer.startswith("Rest") and records[0].answer.endswith("water.")
