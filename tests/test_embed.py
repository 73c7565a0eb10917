import numpy as np
import pandas as pd
import pytest

from ray_longtail.config import EmbedConfig
from ray_longtail.data import schema as S
from ray_longtail.data.ingest import bundled_paths
from ray_longtail.embed import TextEncoder, embed_items, item_texts, resolve_model_path, table_to_vectors
from ray_longtail.errors import UserError

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def items_300():
    items = pd.read_parquet(bundled_paths()[0])
    return items[items[S.TITLE] != ""].sample(300, random_state=3).reset_index(drop=True)


def plain_transformers_loop(texts, max_length=128):
    """Reference: the textbook mean-pooling loop over unsorted batches of 16."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = resolve_model_path(MODEL)
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), 16):
            enc = tok(texts[i:i + 16], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=1).numpy())
    return np.concatenate(out)


def test_item_texts_join_fields_and_skip_empty():
    catalog = pd.DataFrame({"title": ["Mug", "Lamp"], "category": ["Home > Kitchen", ""], "brand": ["", "Acme"],
                            "description": ["Blue.", ""]})
    assert item_texts(catalog, ["title", "category", "brand", "description"]) == [
        "Mug. Home > Kitchen. Blue.", "Lamp. Acme"]
    with pytest.raises(UserError):
        item_texts(catalog, ["nothing"])


def test_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="no-such/model"):
        resolve_model_path("no-such/model")


def test_ray_data_embeddings_equal_plain_loop(ray_head, items_300):
    config = EmbedConfig(block_size=128, batch_size=32, num_actors=2, cpus_per_actor=1.0)
    table = embed_items(items_300, config)
    ids, vectors = table_to_vectors(table)
    assert list(ids) == items_300[S.ITEM_ID].tolist()
    assert vectors.dtype == np.float32 and vectors.shape == (300, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    reference = plain_transformers_loop(item_texts(items_300, config.text_fields))
    cosine = (vectors * reference).sum(1)
    assert cosine.min() >= 0.999


def test_onnx_and_torch_runtimes_give_the_same_vectors(items_300):
    texts = item_texts(items_300, ["title", "category", "description"])
    onnx = TextEncoder(MODEL, runtime="onnx", num_threads=1)
    torch_ = TextEncoder(MODEL, runtime="torch", num_threads=1)
    assert (onnx.runtime, torch_.runtime) == ("onnx", "torch")
    one_by_one = np.concatenate([onnx.encode([t]) for t in texts[:20]])
    np.testing.assert_allclose(onnx.encode(texts, batch_size=32), torch_.encode(texts, batch_size=32), atol=2e-5)
    np.testing.assert_allclose(one_by_one, torch_.encode(texts[:20]), atol=2e-5)
    long_and_short = [" ".join(texts[i:i + 40]) if i % 2 else texts[i] for i in range(32)]  # padded, truncated
    np.testing.assert_allclose(onnx.encode(long_and_short, sort_by_length=False),
                               torch_.encode(long_and_short, sort_by_length=False), atol=2e-5)


def test_runtime_auto_is_onnx_on_cpu_and_torch_on_cuda():
    from ray_longtail.embed import resolve_runtime

    assert resolve_runtime("auto", "cpu") == "onnx"
    assert resolve_runtime("auto", "cuda:0") == "torch"
    assert resolve_runtime("torch", "cpu") == "torch"
    with pytest.raises(UserError, match="embed.runtime"):
        resolve_runtime("onnx", "cuda")


def test_nearest_neighbour_shares_a_content_word(items_300):
    encoder = TextEncoder(MODEL)
    titles = items_300[S.TITLE].tolist()
    vectors = encoder.encode(titles)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1)
    stop = {"OF", "SET", "AND", "THE", "WITH", "IN", "A", "3", "2", "6", "12", "4"}
    shared = [bool((set(titles[i].split()) & set(titles[int(sims[i].argmax())].split())) - stop)
              for i in range(len(titles))]
    assert np.mean(shared) > 0.6  # a random pair shares a content word far less often
    rng = np.random.default_rng(0)
    random_pairs = [bool((set(titles[i].split()) & set(titles[j].split())) - stop)
                    for i, j in rng.integers(0, len(titles), size=(300, 2)) if i != j]
    assert np.mean(shared) > 3 * np.mean(random_pairs)


def test_hashing_encoder_is_unit_norm_and_lexical():
    from ray_longtail.embed import make_encoder

    encoder = make_encoder("hashing")
    vectors = encoder.encode(["red ceramic coffee mug", "red ceramic tea mug", "garden hose reel", ""])
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    assert np.allclose(vectors[3], 0.0)


def test_embedding_survives_a_killed_actor(ray_head):
    """The embedding actor's process is SIGKILLed mid-run (as an OOM kill would): Ray Data restarts the actor
    (max_restarts -1) and retries its blocks, and the vectors equal those of an undisturbed run."""
    import os
    import signal
    import threading
    import time

    from ray.util.state import list_actors

    catalog = pd.read_parquet(bundled_paths()[0])
    config = EmbedConfig(block_size=64, batch_size=32, num_actors=1, cpus_per_actor=1.0)
    undisturbed = table_to_vectors(embed_items(catalog, config))[1]
    killed: list[int] = []

    def kill_once_busy() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            alive = [a for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
                     if "EmbedBatch" in (a.class_name or "")]
            if alive:
                time.sleep(2.0)  # the model is loaded and blocks are flowing
                os.kill(alive[0].pid, signal.SIGKILL)
                killed.append(alive[0].pid)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_once_busy, daemon=True)
    killer.start()
    ids, vectors = table_to_vectors(embed_items(catalog, config))
    killer.join()
    assert killed, "the actor was never seen alive"
    assert list(ids) == catalog[S.ITEM_ID].tolist()
    np.testing.assert_allclose(vectors, undisturbed, atol=1e-5)


def test_an_encoder_onnx_cannot_export_runs_on_torch_under_auto(items_300, monkeypatch):
    import ray_longtail.encoder_runtime as encoder_runtime

    def fail_export(module):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(encoder_runtime, "export_onnx", fail_export)
    texts = item_texts(items_300, ["title", "category", "description"])[:16]
    encoder = TextEncoder(MODEL, device="cpu", runtime="auto", num_threads=1)
    assert encoder.runtime == "torch" and encoder.session is None
    assert encoder.pooled.transformer.config._attn_implementation == "sdpa"
    np.testing.assert_allclose(encoder.encode(texts), TextEncoder(MODEL, runtime="torch", num_threads=1).encode(texts),
                               atol=2e-5)
    with pytest.raises(UserError, match="embed.runtime=torch"):
        TextEncoder(MODEL, device="cpu", runtime="onnx", num_threads=1)


def test_long_texts_are_cut_before_tokenizing_with_the_same_ids(items_300):
    from transformers import AutoTokenizer

    from ray_longtail.encoder_runtime import CLIP_CHARS_PER_TOKEN, clip_at_whitespace, tokenize

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(MODEL))
    titles = item_texts(items_300, ["title", "category"])
    prose = " ".join(titles)  # ~8,000 characters
    few_tokens_then_prose = "sparse " + " " * (CLIP_CHARS_PER_TOKEN * 128) + prose  # the cut keeps one word
    texts = [prose, "\n".join(titles), few_tokens_then_prose, "x" * 5000 + " " + prose, *titles[:20]]
    for max_length in (32, 128):
        limit = CLIP_CHARS_PER_TOKEN * max_length
        assert len(clip_at_whitespace(prose, limit)) < len(prose)
        assert clip_at_whitespace(few_tokens_then_prose, limit).split() == ["sparse"]  # so tokenized whole
        assert clip_at_whitespace(texts[3], limit) is texts[3]  # no whitespace before the limit: not cut
        cut = tokenize(tokenizer, texts, max_length, return_tensors="np")
        whole = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        np.testing.assert_array_equal(cut["input_ids"], whole["input_ids"])
        np.testing.assert_array_equal(cut["attention_mask"], whole["attention_mask"])
