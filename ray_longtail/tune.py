"""Tune: Ray Tune + Optuna search over n_clusters, candidates per source, XGBoost parameters and tail_weight,
scored on the valid window only (fit phase: history = train, labels = valid; the test window is never read).

Each trial re-clusters the item embeddings (TailExplore candidates and the cluster-tail-share feature depend
on it), truncates every source to its top `n_per_source`, trains XGBoost on the training users, re-ranks the
held-out users' lists and reports the constrained objective (max NDCG@10 s.t. TailRecall@10 >= floor).
The best trial is written as a complete YAML config: `ray-longtail run --config <tune/best.yaml>`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ray_longtail.config import Config, config_to_dict, load_config
from ray_longtail.evaluate import system_metrics
from ray_longtail.features import FeatureBuilder, attach_labels
from ray_longtail.rank import xgb_params
from ray_longtail.rerank import candidate_matrix, rerank, tail_appetite
from ray_longtail.retrieve import TailExplore, candidate_union, wide_candidates

log = logging.getLogger(__name__)


def search_space(config: Config) -> dict[str, Any]:
    from ray import tune

    return {
        "n_clusters": tune.choice([8, 16, 32, 64]),
        "n_per_source": tune.choice([20, 30, 50]),
        "eta": tune.loguniform(0.02, 0.3),
        "max_depth": tune.randint(3, 9),
        "min_child_weight": tune.loguniform(0.5, 20.0),
        "subsample": tune.uniform(0.6, 1.0),
        "num_boost_round": tune.choice([100, 200, 400]),
        "tail_weight": tune.choice([w for w in config.eval.tail_weights]),
    }


def trial_config(base: Config, params: dict[str, Any]) -> Config:
    """The full pipeline config a trial stands for (what `best.yaml` holds)."""
    return replace(
        base, run_id=None,
        discover=replace(base.discover, n_clusters=int(params["n_clusters"])),
        retrieve=replace(base.retrieve, n_per_source=int(params["n_per_source"])),
        rank=replace(base.rank, eta=float(params["eta"]), max_depth=int(params["max_depth"]),
                     min_child_weight=float(params["min_child_weight"]), subsample=float(params["subsample"]),
                     num_boost_round=int(params["num_boost_round"])),
        rerank=replace(base.rerank, tail_weight=float(params["tail_weight"]), select_on_valid=False),
    )


def evaluate_trial(params: dict[str, Any], data: dict[str, Any]) -> dict[str, float]:
    """Score one point of the search space on the held-out users' valid window (plain, no Ray inside)."""
    import xgboost

    from ray_longtail.discover import cluster_items
    from ray_longtail.stages import constrained_objective

    config = trial_config(data["config"], params)
    phase, sources = data["phase"], config.retrieve.sources
    labels, _ = cluster_items(phase.context.vectors, config.discover.n_clusters, seed=config.discover.seed)
    context = replace(phase.context, clusters=labels)
    candidates = data["candidates"]
    users = np.unique(candidates["user"].to_numpy())
    if "tail_explore" in sources:
        explore = TailExplore(config.retrieve.tail_explore_clusters).fit(phase.history, context)
        fresh = candidate_union([explore], users, config.retrieve.n_per_source, config.retrieve.user_batch_size)
        candidates = pd.concat([candidates[candidates["source"] != "tail_explore"], fresh], ignore_index=True)
    n = config.retrieve.n_per_source
    union = candidates[candidates["source"].isin(sources) & (candidates["rank"] <= n)]
    share = np.bincount(labels, weights=phase.is_tail.astype(float)) / np.maximum(np.bincount(labels), 1)
    builder = FeatureBuilder(sources, config.rank.last_n_history).fit(phase.history, context, data["catalog"],
                                                                      share[labels])
    features = attach_labels(builder.transform(wide_candidates(union, sources, n)), phase.users, phase.truth)
    features["qid"] = features["user"]
    train_users, holdout_users = data["train_users"], data["holdout_users"]
    positive = features.groupby("user")["label"].max()
    positive = positive[positive > 0].index
    train = features[features["user"].isin(np.intersect1d(train_users, positive))]
    valid = features[features["user"].isin(np.intersect1d(holdout_users, positive))]
    names = builder.feature_names

    def matrix(frame: pd.DataFrame) -> xgboost.DMatrix:
        frame = frame.sort_values("qid", kind="stable")
        return xgboost.DMatrix(frame[names].to_numpy(np.float32), label=frame["label"].to_numpy(np.float32),
                               qid=frame["qid"].to_numpy(), feature_names=names, missing=np.nan)

    booster = xgboost.train(xgb_params(config.rank, nthread=1, seed=config.seed), matrix(train),
                            num_boost_round=config.rank.num_boost_round, evals=[(matrix(valid), "valid")],
                            early_stopping_rounds=config.rank.early_stopping_rounds, verbose_eval=False)
    holdout = features[features["user"].isin(holdout_users)]
    scores = booster.predict(xgboost.DMatrix(holdout[names].to_numpy(np.float32), feature_names=names,
                                             missing=np.nan), iteration_range=(0, booster.best_iteration + 1))
    scored = pd.DataFrame({"user": holdout["user"].to_numpy(), "item": holdout["item"].to_numpy(), "score": scores})
    matrix_users, items, values = candidate_matrix(scored, config.rerank.depth)
    appetite = tail_appetite(phase.history.binary, phase.is_tail, matrix_users)
    lists = rerank(matrix_users, items, values, max(config.eval.ks), config.rerank.tail_weight,
                   config.rerank.method, is_tail=phase.is_tail, appetite=appetite, vectors=phase.context.vectors)
    keep = np.isin(phase.users, holdout_users)
    metrics = system_metrics(replace(phase, users=phase.users[keep], truth=phase.truth[keep]), lists,
                             config.eval.ks)
    return {"objective": constrained_objective(metrics, data["floor"], config.tune.objective),
            "ndcg@10": metrics["ndcg@10"], "tail_recall@10": metrics["tail_recall@10"],
            "coverage@10": metrics["coverage@10"], "rounds": int(booster.best_iteration + 1)}


def trainable(params: dict[str, Any], data: dict[str, Any] | None = None) -> None:
    from ray import tune

    tune.report(evaluate_trial(params, data))


def run_tune(config: Config, num_samples: int | None = None) -> str:
    """Search on the valid window; write `<run>/tune/{results.csv,best.yaml,best.json}`; return best.yaml's path."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from ray_longtail import pipeline
    from ray_longtail.runtime import ray_session
    from ray_longtail.stages import split_holdout

    with ray_session(config.ray):
        store = pipeline.run_stages(config, until="features")
        ctx = pipeline.RunContext(config, store)
        phase = ctx.phase("fit")
        candidates = ctx.candidates("fit")
        users = np.unique(candidates["user"].to_numpy())
        train_users, holdout_users = split_holdout(users, config.rank.holdout_share, config.seed)
        keep = np.isin(phase.users, holdout_users)
        itemknn = system_metrics(replace(phase, users=phase.users[keep], truth=phase.truth[keep]),
                                 candidates[candidates["source"] == "itemknn"], config.eval.ks)
        floor = config.tune.tail_recall_floor_ratio * itemknn["tail_recall@10"]
        data = {"config": config, "phase": phase, "candidates": candidates, "catalog": ctx.table("catalog.parquet"),
                "train_users": train_users, "holdout_users": holdout_users, "floor": floor}
        samples = num_samples or config.tune.num_samples
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(trainable, data=data), {"cpu": 1}),
            param_space=search_space(config),
            tune_config=tune.TuneConfig(metric="objective", mode="max", num_samples=samples,
                                        max_concurrent_trials=config.tune.max_concurrent,
                                        search_alg=OptunaSearch(seed=config.tune.seed)),
            run_config=tune.RunConfig(name=f"tune_{int(time.time() * 1000)}", verbose=0,
                                      storage_path=tempfile.mkdtemp(prefix="ray_longtail_tune_")),
        )
        results = tuner.fit()
    if results.errors:
        log.warning("%d trials failed: %s", len(results.errors), results.errors[0])
    table = results.get_dataframe()
    best = results.get_best_result(metric="objective", mode="max")
    best_config = trial_config(config, best.config)
    columns = [c for c in table.columns if c.startswith("config/")] + [
        "objective", "ndcg@10", "tail_recall@10", "coverage@10", "rounds"]
    store.write_text("tune/results.csv", table[columns].sort_values("objective", ascending=False).to_csv(index=False))
    resolved = config_to_dict(best_config)
    resolved.pop("run_id")
    store.write_text("tune/best.yaml", "# best trial of `ray-longtail tune` (valid window only)\n"
                     + yaml.safe_dump(resolved, sort_keys=False))
    store.write_json("tune/best.json", {"params": best.config, "metrics": {k: best.metrics[k] for k in columns[-5:]},
                                        "floor_tail_recall@10": floor, "trials": int(len(table))})
    load_config(_local_copy(store, "tune/best.yaml"))
    print(table[columns].sort_values("objective", ascending=False).to_string(index=False))
    return store.path("tune/best.yaml")


def _local_copy(store, name: str) -> str:
    """A local file with the artifact's bytes (to validate best.yaml with the normal loader)."""
    path = Path(tempfile.mkdtemp()) / Path(name).name
    path.write_bytes(store.read_bytes(name))
    return str(path)
