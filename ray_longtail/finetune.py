"""Fine-tune the pretrained encoder on the shop's co-interactions (Ray Train `TorchTrainer`), before `embed`.

Positive pairs are consecutive distinct items of one user within `embed.finetune.window_days`, from the train
split only (interactions before the valid window), so no label window (valid or test) reaches the encoder that
both phases' content features use. The loss is in-batch-negative InfoNCE over mean-pooled, normalised embeddings
with a popularity (logQ) correction: an item's log-frequency among the positives is subtracted from its logits,
so a popular item is not pushed away just for being every batch's negative (Yi et al., RecSys 2019); in-batch
duplicates of a positive are masked. Training is data-parallel (DDP over gloo on CPU, NCCL with `use_gpu`, bf16
autocast on GPU), checkpointed every epoch and resumed from the last checkpoint after a worker failure
(`FailureConfig`). The tuned model is saved in the run (`encoder/model/`, Hugging Face format): `embed` and the
serving Encoder load it from there, so served vectors equal batch vectors.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ray_longtail.config import Config, FinetuneConfig
from ray_longtail.data import schema as S
from ray_longtail.history import DAY

log = logging.getLogger(__name__)
ENCODER_DIR = "encoder/model"
STATE_FILE = "model_state.pt"


def training_pairs(events: pd.DataFrame, item_ids: np.ndarray, before_ts: int, window_days: float,
                   max_pairs: int, seed: int = 0) -> np.ndarray:
    """(n, 2) int64 item-index pairs (earlier, later): consecutive distinct items of a user within `window_days`,
    from interactions strictly before `before_ts` only; duplicates removed, a seeded sample of `max_pairs`."""
    rows = events[events[S.TIMESTAMP] < before_ts]
    rows = rows.assign(item=pd.Index(item_ids).get_indexer(rows[S.ITEM_ID]))
    rows = rows[rows["item"] >= 0].sort_values([S.USER_ID, S.TIMESTAMP], kind="stable")
    user, item, ts = (rows[c].to_numpy() for c in (S.USER_ID, "item", S.TIMESTAMP))
    same_user = user[1:] == user[:-1]
    close = (ts[1:] - ts[:-1]) <= window_days * DAY
    keep = same_user & close & (item[1:] != item[:-1])
    pairs = np.unique(np.stack([item[:-1][keep], item[1:][keep]], axis=1).astype(np.int64), axis=0)
    if len(pairs) > max_pairs:
        pairs = pairs[np.sort(np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False))]
    return pairs.reshape(-1, 2)


def split_pairs(pairs: np.ndarray, holdout_share: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) pairs: a seeded share held out to measure the contrastive loss on pairs never trained on."""
    held = np.random.default_rng(seed).random(len(pairs)) < holdout_share
    return pairs[~held], pairs[held]


def log_q(pairs: np.ndarray, n_items: int) -> np.ndarray:
    """log of each item's frequency among the positives (the in-batch negative sampling probability)."""
    counts = np.bincount(pairs[:, 1], minlength=n_items).astype(np.float64) + 1.0
    return np.log(counts / counts.sum()).astype(np.float32)


def info_nce(anchors, positives, positive_items, logq, temperature: float):
    """Mean InfoNCE of (b, d) normalised `anchors` against in-batch `positives`, logQ-corrected; a column whose
    item is the row's own positive (an in-batch duplicate) is masked."""
    import torch

    logits = anchors @ positives.T / temperature
    if logq is not None:
        logits = logits - logq[positive_items][None, :]
    duplicate = (positive_items[:, None] == positive_items[None, :]) & \
        ~torch.eye(len(positive_items), dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(duplicate, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(anchors), device=logits.device))


def _embed(model, tokenizer, texts: list[str], max_length: int, device):
    import torch

    from ray_longtail.encoder_runtime import tokenize

    enc = tokenize(tokenizer, texts, max_length, return_tensors="pt").to(device)
    hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled.float(), p=2, dim=1)


def pairs_loss(model, tokenizer, texts, pairs, logq, cfg: dict, device) -> float:
    """Mean held-out contrastive loss over `pairs` in batches (no gradient)."""
    import torch

    if not len(pairs):
        return float("nan")
    losses = []
    with torch.no_grad():
        for start in range(0, len(pairs), cfg["batch_size"]):
            batch = pairs[start: start + cfg["batch_size"]]
            if len(batch) < 2:
                continue
            a = _embed(model, tokenizer, [texts[i] for i in batch[:, 0]], cfg["max_length"], device)
            p = _embed(model, tokenizer, [texts[i] for i in batch[:, 1]], cfg["max_length"], device)
            losses.append(float(info_nce(a, p, torch.as_tensor(batch[:, 1], device=device), logq,
                                         cfg["temperature"])))
    return float(np.mean(losses)) if losses else float("nan")


def train_fn_per_worker(cfg: dict) -> None:
    """Ray Train loop: each worker takes every world_size-th training pair, DDP averages the gradients; rank 0
    checkpoints the weights and reports train and held-out loss each epoch."""
    import torch
    from ray import train
    from ray.train.torch import get_device, prepare_model
    from transformers import AutoModel, AutoTokenizer

    context = train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = get_device()
    tokenizer = AutoTokenizer.from_pretrained(cfg["model_path"])
    model = AutoModel.from_pretrained(cfg["model_path"])
    start_epoch, history = 0, []
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, map_location="cpu")
        model.load_state_dict(state["model"])
        start_epoch, history = state["epoch"] + 1, state["history"]
    model = prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})  # the pooler is unused
    texts, train_pairs, held = cfg["texts"], np.asarray(cfg["train_pairs"]), np.asarray(cfg["holdout_pairs"])
    logq = torch.as_tensor(cfg["log_q"], device=device) if cfg["logq_correction"] else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["learning_rate"])
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu",
                                                                                                     enabled=False)
    if start_epoch == 0 and rank == 0:
        base = model.module if hasattr(model, "module") else model
        history.append({"epoch": -1, "holdout_loss": pairs_loss(base, tokenizer, texts, held, logq, cfg, device)})
    net = model.module if hasattr(model, "module") else model  # evaluation and saving skip the DDP wrapper
    steps = len(train_pairs) // world // cfg["batch_size"]  # the same on every rank: DDP all-reduces each step
    for epoch in range(start_epoch, cfg["epochs"]):
        order = np.random.default_rng(cfg["seed"] + epoch).permutation(len(train_pairs))[rank::world]
        model.train()
        losses = []
        for step in range(steps):
            batch = train_pairs[order[step * cfg["batch_size"]: (step + 1) * cfg["batch_size"]]]
            with amp:  # one forward over anchors and positives: DDP reduces once per backward
                both = _embed(model, tokenizer, [texts[i] for i in np.concatenate([batch[:, 0], batch[:, 1]])],
                              cfg["max_length"], device)
                a, p = both[: len(batch)], both[len(batch):]
                loss = info_nce(a, p, torch.as_tensor(batch[:, 1], device=device), logq, cfg["temperature"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        model.eval()
        metrics = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan")}
        with tempfile.TemporaryDirectory() as folder:
            saved = None
            if rank == 0:
                metrics["holdout_loss"] = pairs_loss(net, tokenizer, texts, held, logq, cfg, device)
                history.append(metrics)
                torch.save({"model": net.state_dict(), "epoch": epoch, "history": history}, Path(folder) / STATE_FILE)
                saved = train.Checkpoint.from_directory(folder)
            train.report({**metrics, "history": history}, checkpoint=saved)


def finetune_encoder(catalog: pd.DataFrame, events: pd.DataFrame, before_ts: int, config: Config,
                     out_dir: str) -> dict[str, Any]:
    """Fine-tune `config.embed.model` on the pairs of `events` before `before_ts` with Ray Train and save it (Hugging
    Face format, tokenizer included) into `out_dir`. Returns the summary (pairs, losses per epoch, seconds)."""
    import torch
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from transformers import AutoModel, AutoTokenizer

    from ray_longtail.embed import item_texts, resolve_model_path

    tune: FinetuneConfig = config.embed.finetune
    item_ids = catalog[S.ITEM_ID].to_numpy()
    pairs = training_pairs(events, item_ids, before_ts, tune.window_days, tune.max_pairs, config.seed)
    train_pairs, held = split_pairs(pairs, tune.holdout_share, config.seed)
    if len(train_pairs) < tune.num_workers * tune.batch_size:
        raise_few(len(train_pairs), tune)
    model_path = resolve_model_path(config.embed.model)
    loop = {"model_path": model_path, "texts": item_texts(catalog, config.embed.text_fields),
            "train_pairs": train_pairs.tolist(), "holdout_pairs": held.tolist(),
            "log_q": log_q(train_pairs, len(item_ids)).tolist(), "logq_correction": tune.logq_correction,
            "epochs": tune.epochs, "batch_size": tune.batch_size, "learning_rate": tune.learning_rate,
            "temperature": tune.temperature, "max_length": config.embed.max_length, "seed": config.seed}
    start = time.perf_counter()
    trainer = TorchTrainer(
        train_fn_per_worker, train_loop_config=loop,
        scaling_config=ScalingConfig(num_workers=tune.num_workers, use_gpu=tune.use_gpu,
                                     resources_per_worker={"CPU": tune.cpus_per_worker}),
        run_config=RunConfig(name=f"finetune_{int(time.time() * 1000)}",
                             storage_path=tempfile.mkdtemp(prefix="ray_longtail_finetune_"),
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             failure_config=FailureConfig(max_failures=tune.max_failures)))
    result = trainer.fit()
    seconds = time.perf_counter() - start
    with result.checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / STATE_FILE, map_location="cpu")
    model = AutoModel.from_pretrained(model_path)
    model.load_state_dict(state["model"])
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(model_path).save_pretrained(out_dir)
    trained = len(train_pairs) * tune.epochs
    return {"pairs": int(len(pairs)), "train_pairs": int(len(train_pairs)), "holdout_pairs": int(len(held)),
            "items_in_pairs": int(len(np.unique(pairs))), "epochs": tune.epochs, "history": state["history"],
            "seconds": round(seconds, 1), "pairs_per_s": round(trained / seconds, 1), "base_model": config.embed.model}


def raise_few(n: int, tune: FinetuneConfig) -> None:
    from ray_longtail.errors import UserError

    raise UserError(f"embed.finetune: only {n} training pairs (consecutive items of a user within "
                    f"{tune.window_days} days before the valid window); one batch of {tune.batch_size} per worker "
                    f"({tune.num_workers}) is needed: raise embed.finetune.window_days, lower batch_size, or disable "
                    "fine-tuning")


def tuned_encoder_path(store) -> str | None:
    """A local folder holding the run's fine-tuned encoder (downloaded when the run is remote), or None when the
    run has none: what `embed` and the serving Encoder load instead of `embed.model`."""
    if not store.dir_complete(ENCODER_DIR):
        return None
    if "://" not in store.uri:
        return store.path(ENCODER_DIR)
    return str(store.download_dir(ENCODER_DIR))
