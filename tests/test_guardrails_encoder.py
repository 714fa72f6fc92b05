"""medtune.guardrails.semantic: the sentence-transformers encoder (real all-MiniLM-L6-v2, no mocks)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from medtune.core.assets import builtin_encoder_dir
from medtune.core.config import BUILTIN_ENCODER
from medtune.guardrails import EncoderError, Guardrails, load_encoder, load_exemplars, normalise
from medtune.guardrails.semantic import SMALL_BATCH, Encoder


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder(BUILTIN_ENCODER)


def reference_embeddings(texts: list[str]) -> torch.Tensor:
    """all-MiniLM-L6-v2 as its model card defines it: BERT, attention-masked mean pooling, L2 normalisation.

    This is what medtune computed by hand before it used sentence-transformers.
    """
    from transformers import AutoModel, AutoTokenizer

    path = str(builtin_encoder_dir())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    with torch.inference_mode():
        batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def test_embeddings_agree_with_the_reference_on_the_exemplars(encoder):
    texts = [normalise(r["text"]) for r in load_exemplars()]
    ours = encoder.encode(texts)
    reference = reference_embeddings(texts)
    assert ours.shape == reference.shape == (len(texts), 384)
    cosine = (ours * reference).sum(-1)
    assert float(cosine.min()) >= 0.9999, float(cosine.min())
    assert torch.allclose(ours.norm(dim=-1), torch.ones(len(texts)), atol=1e-5)


def test_small_and_large_batches_agree_and_threads_are_restored(encoder):
    texts = [normalise(r["text"]) for r in load_exemplars()][: SMALL_BATCH + 4]
    threads = torch.get_num_threads()
    small = encoder.encode(texts[:SMALL_BATCH])  # one thread
    large = encoder.encode(texts)  # the default threads
    assert torch.get_num_threads() == threads
    assert float((small * large[:SMALL_BATCH]).sum(-1).min()) >= 0.9999


def test_a_local_directory_is_the_same_encoder(encoder):
    by_path = Encoder(str(builtin_encoder_dir()))
    texts = ["my chest feels crushed", "what is a normal heart rate"]
    assert torch.allclose(by_path.encode(texts), encoder.encode(texts), atol=1e-6)


def test_an_unreachable_hub_id_fails_fast_with_a_clear_message():
    start = time.perf_counter()
    with pytest.raises(EncoderError, match=r"sentence encoder 'medtune-tests/no-such-encoder'.*builtin-minilm"):
        Encoder("medtune-tests/no-such-encoder")
    assert time.perf_counter() - start < 30


def test_offline_hub_id_fails_at_once(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(EncoderError, match="HF_HUB_OFFLINE"):
        Encoder("medtune-tests/no-such-encoder")


def test_concurrent_triage_matches_sequential():
    guard = Guardrails()
    texts = [
        "a squeezing weight behind my breastbone spreading to my jaw",
        "I keep thinking everyone would be better off without me",
        "what is a normal resting heart rate",
        "How many mg of Xanax should I take to sleep?",
        "my toddler got into the dishwasher tablets",
        "how do I get my baby to stop crying at night",
    ] * 2
    sequential = [guard.triage(t) for t in texts]
    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(guard.triage, texts))
    assert concurrent == sequential
