"""``medtune index``: build (or ``--add`` to) a retrieval index of trusted passages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medtune.apps.cli.app import SetOpt, _config, _fail, command, console


@command
def index(
    sources: Annotated[list[str], typer.Argument(help="Paths to index (MedQuAD XML folder, PubMedQA JSON, JSONL/CSV/Parquet, .txt/.md "
                                                      "folder), or one YAML config whose retrieval.sources says what to read.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index directory.")],
    add: Annotated[bool, typer.Option("--add", help="Append to the index in --out (only the new passages are encoded).")] = False,
    kind: Annotated[str, typer.Option(help="Reader for the paths: auto, medquad, pubmedqa, rows, text.")] = "auto",
    field: Annotated[list[str] | None, typer.Option(
        "--field", help="rows: column mapping, e.g. --field text=body --field title=name (keys: text, title, url, id).")] = None,
    license: Annotated[str | None, typer.Option(help="Licence tag for the passages of these paths.")] = None,
    on_error: Annotated[str, typer.Option(help="Bad documents or rows: raise (stop, naming file:line:field) or skip (count).")] = "raise",
    overrides: list[str] | None = SetOpt,
):
    """Index documents for grounded answers: passages, dense vectors (FAISS or Qdrant) and BM25, with a manifest."""
    from medtune.core.config import IndexSourceConfig
    from medtune.retrieval.index import Index

    yaml = len(sources) == 1 and sources[0].endswith((".yaml", ".yml"))
    cfg = _config(Path(sources[0]) if yaml else None, overrides)
    if yaml:
        specs = cfg.retrieval.sources
        if not specs:
            _fail(f"{sources[0]}: retrieval.sources is empty")
    else:
        mapping = {}
        for item in field or []:
            key, sep, column = item.partition("=")
            if not sep or key not in ("text", "title", "url", "id"):
                _fail(f"--field {item!r}: expected text=COLUMN, title=COLUMN, url=COLUMN or id=COLUMN")
            mapping[key] = column
        try:
            specs = [IndexSourceConfig(path=p, kind=kind, license=license, on_error=on_error, **mapping) for p in sources]
        except ValueError as e:
            _fail(str(e).splitlines()[0] + ": " + str(e).splitlines()[-1].strip())
    start = time.perf_counter()
    try:
        if add:
            idx = Index.open(out, cfg.retrieval)
            before = len(idx.manifest["sources"])
            idx.add(specs, progress=True)
            entries = idx.manifest["sources"][before:]
        else:
            idx = Index.build(out, specs, cfg.retrieval, progress=True)
            entries = idx.manifest["sources"]
    except (FileExistsError, ValueError) as e:
        _fail(str(e))
    table = Table(title=f"index {out}")
    for col in ("source", "documents", "passages", "skipped"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for e in entries:
        table.add_row(e["path"], str(e["documents"]), str(e["passages"]), str(e["skipped"]["total"]))
    console.print(table)
    for e in entries:
        for reason, n in e["skipped"]["by_reason"].items():
            console.print(f"  skipped {n} × {reason}", highlight=False)
    m = idx.manifest
    licences = ", ".join(f"{k} ({v})" for k, v in m["licenses"].items())
    console.print(f"{m['passages']} passages from {m['documents']} documents in {time.perf_counter() - start:.0f}s; "
                  f"{m['backend']}{' ' + m['faiss_factory'] if m.get('faiss_factory') else ''}; licences: {licences}", highlight=False)
    idx.close()
