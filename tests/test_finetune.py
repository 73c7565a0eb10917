"""Encoder fine-tuning: training pairs (never from a label window), the logQ-corrected in-batch loss, and a real
tiny fine-tune on Ray Train over a slice of the bundled data: the held-out loss falls, the vectors change, the saved
encoder loads offline and the serving Encoder returns the batch vectors; a killed Train worker is recovered."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

from ray_longtail.data import schema as S
from ray_longtail.finetune import info_nce, log_q, split_pairs, training_pairs

DAY = 86400


def test_pairs_are_consecutive_items_within_the_window_and_before_the_cut():
    events = pd.DataFrame({
        S.USER_ID: ["u", "u", "u", "u", "u", "v", "v", "w"],
        S.ITEM_ID: ["a", "b", "b", "c", "d", "a", "c", "z"],
        S.TIMESTAMP: [0, DAY, 2 * DAY, 40 * DAY, 41 * DAY, 0, 5 * DAY, 0]})
    items = np.array(["a", "b", "c", "d"], dtype=object)
    pairs = training_pairs(events, items, before_ts=41 * DAY, window_days=30, max_pairs=100)
    # u: a->b (1 day), b->b repeated (no pair), b->c 38 days (outside the window), c->d at the cut (excluded);
    # v: a->c; w's item is not in the catalog
    assert pairs.tolist() == [[0, 1], [0, 2]]
    later = training_pairs(events, items, before_ts=42 * DAY, window_days=30, max_pairs=100)
    assert [2, 3] in later.tolist()  # c->d once the cut is after it
    assert len(training_pairs(events, items, 42 * DAY, 30, max_pairs=1)) == 1
    train, held = split_pairs(np.arange(2000).reshape(-1, 2), 0.1)
    assert len(train) + len(held) == 1000 and 60 < len(held) < 140
    assert not set(map(tuple, train.tolist())) & set(map(tuple, held.tolist()))


def test_the_loss_subtracts_log_popularity_and_masks_duplicate_positives():
    import torch

    rng = np.random.default_rng(0)
    a = torch.nn.functional.normalize(torch.as_tensor(rng.normal(size=(4, 8)), dtype=torch.float32), dim=1)
    p = torch.nn.functional.normalize(torch.as_tensor(rng.normal(size=(4, 8)), dtype=torch.float32), dim=1)
    items = torch.tensor([0, 1, 2, 3])
    plain = float(info_nce(a, p, items, None, 0.1))
    logits = (a @ p.T / 0.1).numpy()
    expected = np.mean([np.log(np.exp(row).sum()) - row[i] for i, row in enumerate(logits)])
    assert plain == pytest.approx(expected, rel=1e-5)
    logq = torch.as_tensor(log_q(np.array([[9, 0], [9, 0], [9, 0], [9, 1]]), 4))  # item 0 is the popular one
    corrected = (logits - logq.numpy()[None, :])
    assert float(info_nce(a, p, items, logq, 0.1)) == pytest.approx(
        np.mean([np.log(np.exp(row).sum()) - row[i] for i, row in enumerate(corrected)]), rel=1e-5)
    duplicated = torch.tensor([0, 0, 2, 3])  # rows 0 and 1 share a positive: neither is the other's negative
    masked = logits.copy()
    masked[0, 1] = masked[1, 0] = -np.inf
    assert float(info_nce(a, p, duplicated, None, 0.1)) == pytest.approx(
        np.mean([np.log(np.exp(row).sum()) - row[i] for i, row in enumerate(masked)]), rel=1e-5)


TINY = ["--set", "embed.finetune.enabled=true", "--set", "embed.finetune.max_pairs=240", "--set",
        "embed.finetune.batch_size=8", "--set", "embed.finetune.learning_rate=5e-5", "--set",
        "embed.finetune.holdout_share=0.2"]


@pytest.fixture(scope="module")
def tuned(ray_head, bundled_slice, tmp_path_factory):
    from conftest import cli

    items, interactions = bundled_slice
    artifacts = tmp_path_factory.mktemp("tuned")
    done = cli(["embed", "--items", items, "--interactions", interactions, "--artifacts", str(artifacts),
                "--run-id", "tuned", *TINY, "-q"], ray_head, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return artifacts / "tuned"


def test_a_tiny_finetune_lowers_the_held_out_loss_and_changes_the_vectors(tuned):
    import pyarrow.parquet as pq

    from ray_longtail.embed import TextEncoder, item_texts, table_to_vectors

    summary = json.loads((tuned / "encoder" / "finetune.json").read_text())
    losses = [h["holdout_loss"] for h in summary["history"]]
    assert summary["train_pairs"] > 100 and summary["holdout_pairs"] > 10
    assert losses[-1] < losses[0], losses
    ids, vectors = table_to_vectors(pq.read_table(tuned / "item_embeddings.parquet"))
    catalog = pd.read_parquet(tuned / "catalog.parquet").set_index(S.ITEM_ID).loc[ids[:50]].reset_index()
    base = TextEncoder("sentence-transformers/all-MiniLM-L6-v2").encode(
        item_texts(catalog, ["title", "category", "brand", "description"]))
    cosines = (base * vectors[:50]).sum(axis=1)
    assert cosines.min() < 0.999 and cosines.mean() > 0.5  # moved, not destroyed


def test_the_serving_encoder_loads_the_tuned_model_and_returns_the_batch_vectors(tuned, monkeypatch):
    import pyarrow.parquet as pq

    from ray_longtail.embed import item_texts, table_to_vectors
    from ray_longtail.serve.encoder import Encoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ids, vectors = table_to_vectors(pq.read_table(tuned / "item_embeddings.parquet"))
    encoder = Encoder.func_or_class("sentence-transformers/all-MiniLM-L6-v2", 128, "cpu", 1, str(tuned))
    assert "fine-tuned" in encoder.model
    catalog = pd.read_parquet(tuned / "catalog.parquet").set_index(S.ITEM_ID).loc[ids[:40]].reset_index()
    served = encoder.encoder.encode(item_texts(catalog, ["title", "category", "brand", "description"]))
    np.testing.assert_allclose(served, vectors[:40], atol=2e-5)


def test_a_killed_train_worker_is_recovered(ray_head, tuned, tmp_path):
    """A Train worker killed during fine-tuning: FailureConfig restarts the group and the run still finishes."""
    from ray.util.state import list_actors

    from ray_longtail.config import load_config
    from ray_longtail.finetune import finetune_encoder

    config = load_config(overrides=[t for t in TINY if t != "--set"] + ["embed.finetune.max_pairs=480"])
    catalog = pd.read_parquet(tuned / "catalog.parquet")
    train = pd.read_parquet(tuned / "split" / "train.parquet")
    cut = json.loads((tuned / "split" / "cuts.json").read_text())["cut_valid"]
    outcome: dict = {}

    def fit() -> None:
        try:
            outcome["summary"] = finetune_encoder(catalog, train, cut, config, str(tmp_path / "model"))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=fit)
    thread.start()
    deadline, killed = time.time() + 240, None
    while time.time() < deadline and killed is None and thread.is_alive():
        workers = [a for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
                   if a.class_name.endswith("RayTrainWorker")]
        if len(workers) == 2:
            time.sleep(8)  # let it load the model and start its steps
            os.kill(workers[0].pid, signal.SIGKILL)  # the worker's process dies mid-training
            killed = workers[0].actor_id
        time.sleep(1)
    thread.join(timeout=600)
    assert killed is not None, "no Train worker to kill"
    assert "error" not in outcome, outcome.get("error")
    assert (tmp_path / "model" / "model.safetensors").exists() and outcome["summary"]["train_pairs"] > 100
