"""medtune.retrieval: passages, the index (dense + BM25, fused), its manifest, --add, Qdrant's local mode,
citation checks; the answer path with an index (triage first, sources, not found); `medtune index` and `ask --index`."""

from __future__ import annotations

import json
import random

import pytest
from helpers import shared
from typer.testing import CliRunner

from medtune.core.config import IndexSourceConfig, RetrievalConfig, load_config
from medtune.data.errors import DataError, SkipLog
from medtune.retrieval import Index, Retriever, rrf
from medtune.retrieval.cite import Citations, support
from medtune.retrieval.passages import pack, read_documents
from medtune.retrieval.stores import StoreError

DOCS = {
    "glaucoma.md": "# Glaucoma\n\nGlaucoma is a group of eye diseases that damage the optic nerve. High pressure inside the eye "
                   "is the main risk factor. Eye drops that lower the pressure are the usual first treatment.",
    "anemia.md": "# Iron deficiency anemia\n\nIron deficiency anemia happens when the body lacks iron to make hemoglobin. "
                 "It causes tiredness, pale skin and shortness of breath. Iron supplements and iron-rich food treat it.",
    "gout.txt": "Gout is a form of arthritis caused by uric acid crystals in a joint. Attacks bring sudden severe pain, "
                "often in the big toe. Drinking less alcohol and eating less red meat lower the risk of attacks.",
}
LEAFLETS = [  # a clinic's own layout: other column names, one document a row
    {"leaflet_no": "L-7", "heading": "Shingles vaccine", "body": "The shingles vaccine is given as two doses, two to six "
     "months apart, to adults aged 50 and over.", "link": "https://clinic.example/leaflets/7"},
    {"leaflet_no": "L-9", "heading": "Travel malaria tablets", "body": "Malaria tablets are started before travel and "
     "continued after return; which tablet depends on the destination.", "link": "https://clinic.example/leaflets/9"},
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    folder = root / "leaflets_md"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    rows = root / "clinic.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in LEAFLETS))
    return folder, rows


def clinic(rows, **kw) -> IndexSourceConfig:
    return IndexSourceConfig(path=str(rows), text="body", title="heading", url="link", id="leaflet_no", license="clinic-internal", **kw)


@pytest.fixture(scope="module")
def index_dir(corpus, tmp_path_factory):
    folder, rows = corpus
    out = tmp_path_factory.mktemp("index") / "idx"
    Index.build(out, [IndexSourceConfig(path=str(folder)), clinic(rows)], RetrievalConfig()).close()
    return out


def test_index_finds_the_right_document_in_every_mode_and_keeps_its_metadata(index_dir):
    index = Index.open(index_dir)
    for mode in ("hybrid", "dense", "bm25"):
        assert index.search("What treats high eye pressure?", 2, mode=mode)[0].passage["title"] == "Glaucoma", mode
        top = index.search("when should adults get the shingles jab", 1, mode=mode)[0]
        assert (top.passage["title"], top.passage["url"], top.passage["license"]) == \
            ("Shingles vaccine", "https://clinic.example/leaflets/7", "clinic-internal"), mode
    hit = index.search("uric acid crystals in the big toe", 1)[0]
    assert hit.passage["id"].startswith("leaflets_md:gout.txt#") and hit.passage["url"].startswith("file://")
    assert 0.3 < hit.score <= 1.0 and hit.source().keys() == {"id", "title", "url", "score"}


def test_manifest_records_sources_hashes_encoder_and_licences(index_dir, corpus):
    m = json.loads((index_dir / "manifest.json").read_text())
    assert m["passages"] == 5 and m["documents"] == 5 and m["encoder"] == "builtin-minilm"
    assert m["licenses"] == {"unknown": 3, "clinic-internal": 2}
    assert [s["documents"] for s in m["sources"]] == [3, 2] and all(len(s["sha256"]) == 64 for s in m["sources"])
    assert m["store"] == {"backend": "faiss", "vectors": 5}


def test_reciprocal_rank_fusion_order():
    # 1: 1/61; 2: 2/62 = 0.032258; 3: 1/63 + 1/61 = 0.032266; 4: 1/63
    assert [i for i, _ in rrf([[1, 2, 3], [3, 2, 4]], k=60)] == [3, 2, 1, 4]
    assert [i for i, _ in rrf([[5, 6]], k=60)] == [5, 6]


def test_add_appends_without_reencoding_and_counts_repeats(index_dir, corpus, tmp_path):
    import shutil

    folder, rows = corpus
    copy = tmp_path / "idx"
    shutil.copytree(index_dir, copy)
    first_shard = (copy / "vectors-000.npy").read_bytes()
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "asthma.md").write_text("# Asthma\n\nAn asthma inhaler with a steroid reduces swelling in the airways.")
    index = Index.open(copy)
    added = index.add([IndexSourceConfig(path=str(extra)), clinic(rows, on_error="skip")])
    assert (added["documents"], added["passages"], added["skipped"]) == (1, 1, 2)  # the leaflets are already there
    assert (copy / "vectors-000.npy").read_bytes() == first_shard and (copy / "vectors-001.npy").exists()
    reopened = Index.open(copy)
    assert reopened.manifest["passages"] == 6 and reopened.search("steroid inhaler for airways", 1)[0].passage["title"] == "Asthma"
    assert "already in the index" in json.dumps(reopened.manifest["sources"][-1]["skipped"])


def test_bad_rows_name_file_line_and_field_or_are_counted(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"title": "no text"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: field 'text'"):
        read_documents(IndexSourceConfig(path=str(bad)))
    skips = SkipLog()
    assert len(read_documents(IndexSourceConfig(path=str(bad), on_error="skip"), skips)) == 1 and skips.total == 1
    with pytest.raises(DataError, match="does not exist"):
        read_documents(IndexSourceConfig(path=str(tmp_path / "missing.csv")))


def test_faiss_factory_options(corpus, tmp_path):
    folder, _ = corpus
    hnsw = Index.build(tmp_path / "hnsw", [IndexSourceConfig(path=str(folder))], RetrievalConfig(faiss_factory="HNSW8"))
    assert hnsw.search("optic nerve damage", 1)[0].passage["title"] == "Glaucoma"
    with pytest.raises(StoreError, match="need at least 64 passages"):
        Index.build(tmp_path / "ivf", [IndexSourceConfig(path=str(folder))], RetrievalConfig(faiss_factory="IVF64,Flat"))


def test_qdrant_local_mode_behind_the_same_interface(corpus, tmp_path):
    pytest.importorskip("qdrant_client")
    folder, rows = corpus
    cfg = RetrievalConfig(backend="qdrant", qdrant_collection="leaflets")
    Index.build(tmp_path / "q", [IndexSourceConfig(path=str(folder)), clinic(rows)], cfg).close()
    index = Index.open(tmp_path / "q")
    assert index.manifest["store"]["backend"] == "qdrant" and len(index.store) == 5
    hit = index.search("Which tablets for a trip abroad against malaria?", 1)[0]
    assert hit.passage["title"] == "Travel malaria tablets" and 0.3 < hit.score <= 1.0
    index.close()


def test_passages_are_token_bounded_with_overlap():
    sents = [f"s{i}" for i in range(6)]
    out = pack(sents, [40] * 6, max_tokens=100, overlap=40)
    assert out == ["s0 s1", "s1 s2", "s2 s3", "s3 s4", "s4 s5"]  # 2 × 40 tokens each, the last sentence repeated
    assert pack(sents, [40] * 6, max_tokens=100, overlap=0) == ["s0 s1", "s2 s3", "s4 s5"]


def test_citation_checks():
    text = "Glaucoma damages the optic nerve [1]. Eye drops lower the pressure [2, 5]. Cats purr [4]."
    passages = ["Glaucoma is an eye disease that damages the optic nerve.", "Gout is a kind of arthritis."]
    cites = Citations(passages, move=False)
    cleaned = cites.fix(text)
    assert cleaned == "Glaucoma damages the optic nerve [1]. Eye drops lower the pressure [2]. Cats purr." and cites.removed == 2
    # moving: each marker goes to the passage that holds the sentence before it, when its own does not and one does
    swapped = ("Gout is a kind of arthritis [1]. Glaucoma damages the optic nerve. [2] Eye drops help [1, 9]. "
               "Cats purr and sleep all day [2].")
    moved = "Gout is a kind of arthritis [2]. Glaucoma damages the optic nerve. [1] Eye drops help [1]. Cats purr and sleep all day [2]."
    rng = random.Random(0)
    for source, expected, n_removed, n_moved in ((text, cleaned, 2, 0), (swapped, moved, 1, 2)):
        whole = Citations(passages)
        assert whole.fix(source) == expected and (whole.removed, whole.moved) == (n_removed, n_moved)
        for _ in range(20):  # streamed in random pieces, the same text comes out
            cuts = sorted(rng.sample(range(1, len(source)), 8))
            pieces = [source[a:b] for a, b in zip([0, *cuts], [*cuts, len(source)], strict=True)]
            stream = Citations(passages)
            assert "".join(stream.stream(pieces)) == expected and (stream.removed, stream.moved) == (whole.removed, whole.moved)
            assert stream.original == whole.original
    assert whole.original == swapped.replace("[1, 9]", "[1]")  # the model's own attribution, only the invalid number out
    assert support(whole.original, passages)["supported"] == 0 and support(moved, passages)["supported"] == 2
    passages = ["Glaucoma is an eye disease that damages the optic nerve.", "Gout is a kind of arthritis."]
    stats = support(cleaned, passages)
    assert stats == {"citations": 2, "cited_sentences": 2, "supported": 1, "unsupported": 1, "precision": 0.5}
    # per document: the sentence cites [1] but [2] holds it; counted only when [2] is a passage of the same document
    moved = "Gout is a kind of arthritis [1]. Glaucoma damages the optic nerve [1]."
    assert support(moved, passages, documents=["a", "b"])["document_supported"] == 1
    same = support(moved, passages, documents=["a", "a"])
    assert (same["supported"], same["document_supported"], same["document_precision"]) == (1, 2, 1.0)


@pytest.fixture(scope="module")
def tiny_responder(tiny_model_dir, index_dir):
    from medtune.inference.loading import load_generator
    from medtune.inference.responder import Responder

    cfg = load_config(None, [f"model.name={tiny_model_dir}", f"retrieval.index={index_dir}", "generation.max_new_tokens=6",
                             "generation.temperature=0"])
    generator, cfg = load_generator(str(tiny_model_dir), cfg=cfg)
    return Responder(generator, cfg)


def test_answer_path_triage_first_then_grounded_or_not_found(tiny_responder):
    emergency = tiny_responder.prepare("My father has crushing chest pain spreading to his arm and he is sweating.")
    assert emergency.fixed and emergency.grounding is None  # the fixed reply never waited for retrieval
    turn = tiny_responder.prepare("What is the first treatment for glaucoma?")
    assert turn.grounded and "[1] Glaucoma" in turn.system and "cite it" in turn.system
    a = tiny_responder.complete(turn)
    assert a.grounded is True and a.sources[0]["title"] == "Glaucoma" and a.sources[0]["url"].startswith("file://")
    assert a.answer.endswith(turn.grounding.sources_text()) and "\nSources:\n[1] Glaucoma — file://" in a.answer
    assert set(a.citations) >= {"citations", "removed", "supported", "unsupported", "precision"}
    streamed = tiny_responder.stream("What is the first treatment for glaucoma?")
    assert "".join(text for _, text in streamed) == streamed.answer == a.answer and streamed.sources == a.sources
    off = tiny_responder.answer("Who won the 1998 football world cup final?")
    assert off.grounded is False and off.sources == [] and off.answer.startswith("I could not find this in the indexed sources.")
    assert "Sources:" not in off.answer


def test_refuse_when_not_found_calls_no_model(tiny_responder):
    from medtune.inference.responder import Responder

    cfg = tiny_responder.cfg.model_copy(deep=True)
    cfg.retrieval.not_found = "refuse"
    strict = Responder(tiny_responder.generator, cfg, tiny_responder.guardrails, retriever=Retriever(cfg.retrieval))
    turn = strict.prepare("Who won the 1998 football world cup final?")
    assert turn.fixed and strict.complete(turn).answer == "I could not find this in the indexed sources."


def test_cli_index_and_ask_batch_with_sources(corpus, tiny_model_dir, tmp_path):
    from medtune.apps.cli import app

    folder, rows = corpus
    runner = CliRunner()
    out = tmp_path / "idx"
    result = runner.invoke(app, ["index", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["index", str(rows), "--out", str(out), "--add", "--field", "text=body", "--field", "title=heading",
                                 "--field", "url=link", "--field", "id=leaflet_no"])
    assert result.exit_code == 0 and "5 passages from 5 documents" in result.output, result.output
    again = runner.invoke(app, ["index", str(folder), "--out", str(out)])
    assert again.exit_code == 1 and "already holds an index" in again.output
    prompts = tmp_path / "in.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": "How many doses does the shingles vaccine take?"}) + "\n")
    answers = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["ask", "--model", str(tiny_model_dir), "--index", str(out), "--input", str(prompts),
                                 "--output", str(answers), "--set", "generation.max_new_tokens=4"])
    assert result.exit_code == 0, result.output
    row = json.loads(answers.read_text())
    assert row["grounded"] and row["sources"][0]["url"] == "https://clinic.example/leaflets/7"
    assert set(row["sources"][0]) == {"id", "title", "url", "score"} and "Sources:\n[1] Shingles vaccine" in row["answer"]


def test_medquad_documents_keep_url_and_focus():
    docs = read_documents(IndexSourceConfig(path=str(shared("medquad", "9_CDC_QA", "0000038.xml"))))
    assert len(docs) == 1 and docs[0].title.startswith("Parasites - Babesiosis")
    assert docs[0].url == "http://www.cdc.gov/parasites/babesiosis/" and docs[0].license == "cc-by-4.0" and docs[0].sections
