"""Stages after embedding: discover, profile, retrieve, evaluate. Each reads earlier artifacts through the
`RunContext`, writes its own, and returns a small summary for the manifest."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from ray_longtail.data import schema as S
from ray_longtail.discover import cluster_items, cluster_labels, cluster_table, discovery_summary
from ray_longtail.embed import item_texts
from ray_longtail.errors import UserError
from ray_longtail.evaluate import (
    BASELINE_NAMES,
    baseline_metrics,
    candidate_recall_table,
    recommendations_frame,
    system_metrics,
)
from ray_longtail.features import FeatureBuilder, attach_labels, features_on_ray
from ray_longtail.profile import profiles_table
from ray_longtail.rank import load_ranker, predict, save_ranker, score_on_ray, train_ranker
from ray_longtail.rerank import candidate_matrix, rerank, tail_appetite
from ray_longtail.retrieve import (
    candidate_union,
    candidates_on_ray,
    fit_sources,
    make_sources,
    reciprocal_rank_blend,
    wide_candidates,
)

log = logging.getLogger(__name__)
CANDIDATES = {"eval": "candidates.parquet", "fit": "fit/candidates.parquet"}
FEATURES = {"eval": "features.parquet", "fit": "fit/features.parquet"}
SOURCES_ARTIFACT = "sources/eval.pkl"


def stage_discover(ctx) -> dict[str, Any]:
    config = ctx.config
    catalog = ctx.table("catalog.parquet")
    vectors = ctx.vectors()
    labels, _ = cluster_items(vectors, config.discover.n_clusters, seed=config.discover.seed)
    phase = ctx.phase("eval")
    segments = phase.segments.assign(**{S.CLUSTER: labels})
    names = cluster_labels(item_texts(catalog, config.embed.text_fields), labels, config.discover.label_terms)
    clusters = cluster_table(phase.segments, labels, names)
    ctx.store.write_table("item_segments.parquet", segments)
    ctx.store.write_table("clusters.parquet", clusters)
    ctx.forget_phases()
    ctx.cache["discovery_summary"] = discovery_summary(clusters)
    counts = segments[S.SEGMENT].value_counts().to_dict()
    return {"clusters": int(clusters.shape[0]), **{k: int(v) for k, v in counts.items()}}


def stage_profile(ctx) -> dict[str, Any]:
    phase = ctx.phase("eval")
    ctx.store.write_table("user_profiles.parquet", profiles_table(phase.history, phase.context.profiles))
    return {"users": int(phase.history.n_users)}


def retrieve_phase(ctx, phase_name: str) -> pd.DataFrame:
    """Fit every source on the phase's history and return the long candidate frame for its users (the eval
    phase's fitted sources are also saved as `sources/eval.pkl` for serving)."""
    config = ctx.config
    phase = ctx.phase(phase_name)
    users = phase.users
    if phase_name == "fit" and len(users) > config.rank.max_train_users:
        rng = np.random.default_rng(config.seed)
        users = np.sort(rng.choice(users, size=config.rank.max_train_users, replace=False))
    names = list(dict.fromkeys(config.retrieve.sources + list(BASELINE_NAMES)))
    sources = fit_sources(make_sources(config.retrieve, config.seed, names), phase.history, phase.context)
    if phase_name == "eval":
        ctx.store.write_pickle(SOURCES_ARTIFACT, sources)
    n = max(config.retrieve.n_per_source, max(config.eval.ks))
    if config.retrieve.use_ray:
        import ray

        sources_ref = ray.put(sources)
        del sources  # the actors read the object-store copy; the driver keeps none
        long = candidates_on_ray(sources_ref, phase.history.n_items, users, n, config.retrieve.user_batch_size,
                                 config.eval.exclude_seen, config.retrieve.max_actors)
    else:
        long = candidate_union(sources, users, n, config.retrieve.user_batch_size, config.eval.exclude_seen)
    return long.sort_values(["user", "source", "rank"], kind="stable").reset_index(drop=True)


def stage_retrieve(ctx) -> dict[str, Any]:
    """Candidates of the fit phase, then of the eval phase. The fit phase is dropped from the cache before the
    eval phase is built (a later stage rebuilds it), so only one phase's matrices and profiles are in memory."""
    summary = {}
    for phase_name, artifact in CANDIDATES.items():
        long = retrieve_phase(ctx, phase_name)
        ctx.store.write_table(artifact, ctx.ids_frame(phase_name, long))
        summary[f"{phase_name}_rows"] = int(len(long))
        summary[f"{phase_name}_users"] = int(long["user"].nunique())
        if phase_name == "fit":
            ctx.cache.pop("phase:fit", None)
        else:
            ctx.cache[artifact] = long
    return summary


def union_wide(config, candidates: pd.DataFrame) -> pd.DataFrame:
    """The candidate union of the configured sources (top n_per_source each), one row per (user, item)."""
    sources, n = config.retrieve.sources, config.retrieve.n_per_source
    union = candidates[candidates["source"].isin(sources) & (candidates["rank"] <= n)]
    return wide_candidates(union, sources, n)


def feature_builder(ctx, phase_name: str) -> FeatureBuilder:
    """The phase's fitted FeatureBuilder (cluster tail shares computed on the phase's own history)."""
    key = f"builder:{phase_name}"
    if key not in ctx.cache:
        phase = ctx.phase(phase_name)
        labels = ctx.clusters()
        share = np.bincount(labels, weights=phase.is_tail.astype(np.float64)) / np.maximum(np.bincount(labels), 1)
        ctx.cache[key] = FeatureBuilder(ctx.config.retrieve.sources, ctx.config.rank.last_n_history).fit(
            phase.history, phase.context, ctx.table("catalog.parquet"), share[labels])
    return ctx.cache[key]


def phase_features(ctx, phase_name: str) -> pd.DataFrame:
    """Feature rows of a phase's candidate union (Ray Data over user shards when retrieve.use_ray)."""
    builder = feature_builder(ctx, phase_name)
    wide = union_wide(ctx.config, ctx.candidates(phase_name))
    ctx.cache[f"feature_names:{phase_name}"] = builder.feature_names
    if ctx.config.retrieve.use_ray:
        return features_on_ray(builder, wide)
    return builder.transform(wide)


def stage_features(ctx) -> dict[str, Any]:
    summary = {}
    for phase_name, artifact in FEATURES.items():
        features = phase_features(ctx, phase_name)
        if phase_name == "fit":
            phase = ctx.phase("fit")
            features = attach_labels(features, phase.users, phase.truth)
            summary["fit_positive_rate"] = round(float(features["label"].mean()), 4)
        ctx.store.write_table(artifact, features)
        ctx.cache[artifact] = features
        summary[f"{phase_name}_rows"] = int(len(features))
    ctx.store.write_json("feature_names.json", ctx.cache["feature_names:fit"])
    return summary


def split_holdout(users: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of user indices into (train users, holdout users)."""
    rng = np.random.default_rng(seed)
    holdout = rng.random(len(users)) < share
    return users[~holdout], users[holdout]


def stage_rank(ctx) -> dict[str, Any]:
    """Train the ranker on the fit phase (history = train, labels = valid) with Ray Train, then pick the
    tail_weight on the held-out users' valid window."""
    config = ctx.config
    features = ctx.table(FEATURES["fit"])
    names = ctx.json("feature_names.json")
    users = np.unique(features["user"].to_numpy())
    train_users, holdout_users = split_holdout(users, config.rank.holdout_share, config.seed)
    if not config.rank.enabled:
        selection = select_tail_weight(ctx, features[features["user"].isin(holdout_users)], holdout_users)
        ctx.store.write_json("ranker/selection.json", selection)
        ctx.store.write_bytes("ranker/_SUCCESS", b"ranker disabled: reciprocal-rank blend")
        return {"ranker": "disabled", "selected_tail_weight": selection["selected"]}
    with_positive = features.groupby("user")["label"].max()
    positive_users = with_positive[with_positive > 0].index.to_numpy()
    frame = features.assign(qid=features["user"].astype(np.int64))
    train = frame[frame["user"].isin(np.intersect1d(train_users, positive_users))]
    valid = frame[frame["user"].isin(np.intersect1d(holdout_users, positive_users))]
    if train.empty or valid.empty:
        raise UserError("no user has a bought item among its candidates in the valid window: the ranker cannot "
                        "learn; use a longer split.valid_days or set rank.enabled=false")
    booster, info = train_ranker(train, valid, names, config.rank, storage_path=config.rank.storage_path,
                                 seed=config.seed)
    info.update(train_groups=int(train["qid"].nunique()), holdout_groups=int(valid["qid"].nunique()),
                dropped_users_without_positive=int(len(users) - len(positive_users)))
    save_ranker(ctx.store, booster, names, info)
    ctx.cache["booster"] = (booster, names)
    holdout_frame = features[features["user"].isin(holdout_users)]
    selection = select_tail_weight(ctx, holdout_frame, holdout_users)
    ctx.store.write_json("ranker/selection.json", selection)
    return {"rounds": info.get("rounds"), "train_groups": info["train_groups"],
            "selected_tail_weight": selection["selected"]}


def ranker_scores(ctx, features: pd.DataFrame, on_ray: bool | None = None) -> np.ndarray:
    """Ranker score per feature row (the reciprocal-rank blend when the ranker is disabled)."""
    if not ctx.config.rank.enabled:
        return reciprocal_rank_blend(features, ctx.config.retrieve.sources)
    if "booster" not in ctx.cache:
        ctx.cache["booster"] = load_ranker(ctx.store)
    booster, names = ctx.cache["booster"]
    on_ray = ctx.config.rank.score_on_ray if on_ray is None else on_ray
    if on_ray and len(features) > 0:
        return score_on_ray(booster, features, names)
    return predict(booster, features, names)


def ranked_lists(ctx, phase_name: str, scored: pd.DataFrame, tail_weight: float, k: int) -> pd.DataFrame:
    """Rerank scored candidates (user, item, score, best source) into final top-k lists for a phase."""
    config = ctx.config
    phase = ctx.phase(phase_name)
    users, items, scores = candidate_matrix(scored, config.rerank.depth)
    appetite = tail_appetite(phase.history.binary, phase.is_tail, users)
    lists = rerank(users, items, scores, k, tail_weight, config.rerank.method, is_tail=phase.is_tail,
                   appetite=appetite, vectors=phase.context.vectors)
    source = scored.set_index(["user", "item"])["source"]
    return lists.assign(source=source.reindex(pd.MultiIndex.from_frame(lists[["user", "item"]])).to_numpy())


def scored_candidates(ctx, features: pd.DataFrame, on_ray: bool | None = None) -> pd.DataFrame:
    """(user, item, score, source): ranker scores with the best-ranked source of each candidate."""
    sources = ctx.config.retrieve.sources
    best = np.asarray(sources)[np.argmin(features[[f"rank_{s}" for s in sources]].to_numpy(), axis=1)]
    return pd.DataFrame({"user": features["user"].to_numpy(), "item": features["item"].to_numpy(),
                         "score": ranker_scores(ctx, features, on_ray), "source": best})


def constrained_objective(metrics: dict[str, float], floor: float, objective: str = "ndcg@10") -> float:
    """Maximise `objective` subject to TailRecall@10 >= floor: feasible lists score their objective, infeasible
    ones score below every feasible one, closer to feasibility scoring higher."""
    if metrics["tail_recall@10"] >= floor:
        return float(metrics[objective])
    return -1.0 + float(metrics["tail_recall@10"]) / max(floor, 1e-12)


def select_tail_weight(ctx, holdout_features: pd.DataFrame, holdout_users: np.ndarray) -> dict:
    """Trade-off curve on the held-out users' valid window. Selected: the largest tail_weight whose NDCG@10 is
    within `rerank.ndcg_tolerance` of the best weight's and whose TailRecall@10 meets the floor (2x ItemKNN's);
    if none meets the floor, the weight with the best constrained objective. Small NDCG differences between
    weights are within noise on a few hundred users, so "best NDCG" alone would pick at random among them."""
    config = ctx.config
    phase = ctx.phase("fit")
    keep = np.isin(phase.users, holdout_users)
    holdout_phase = replace(phase, users=phase.users[keep], truth=phase.truth[keep])
    scored = scored_candidates(ctx, holdout_features)
    candidates = ctx.candidates("fit")
    itemknn = system_metrics(holdout_phase, candidates[candidates["source"] == "itemknn"], config.eval.ks)
    floor = config.tune.tail_recall_floor_ratio * itemknn["tail_recall@10"]
    curve = {}
    for weight in config.eval.tail_weights:
        lists = ranked_lists(ctx, "fit", scored, weight, max(config.eval.ks))
        metrics = system_metrics(holdout_phase, lists, config.eval.ks)
        curve[str(weight)] = {key: metrics[key] for key in ("ndcg@10", "tail_recall@10", "coverage@10", "aplt@10")}
        curve[str(weight)]["objective"] = constrained_objective(metrics, floor, config.tune.objective)
    best_ndcg = max(curve[str(w)]["ndcg@10"] for w in config.eval.tail_weights)
    feasible = [w for w in config.eval.tail_weights if curve[str(w)]["tail_recall@10"] >= floor
                and curve[str(w)]["ndcg@10"] >= (1 - config.rerank.ndcg_tolerance) * best_ndcg]
    selected = max(feasible) if feasible else max(config.eval.tail_weights,
                                                  key=lambda w: (curve[str(w)]["objective"], -w))
    return {"selected": float(selected), "floor_tail_recall@10": floor, "itemknn": itemknn, "curve": curve,
            "holdout_users": int(len(holdout_phase.users))}


def stage_evaluate(ctx) -> dict[str, Any]:
    config = ctx.config
    ks = config.eval.ks
    phase = ctx.phase("eval")
    candidates = ctx.candidates("eval")
    systems = baseline_metrics(phase, candidates, ks)
    scored = scored_candidates(ctx, ctx.table(FEATURES["eval"]))
    if config.rerank.select_on_valid and config.rank.enabled and ctx.store.exists("ranker/selection.json"):
        tail_weight = ctx.store.read_json("ranker/selection.json")["selected"]
    else:
        tail_weight = config.rerank.tail_weight
    curve, final = {}, None
    for weight in sorted(set(config.eval.tail_weights) | {0.0, tail_weight}):
        lists = ranked_lists(ctx, "eval", scored, weight, max(ks))
        metrics = system_metrics(phase, lists, ks)
        curve[str(weight)] = metrics
        if weight == 0.0:
            systems["system_tw0"] = metrics
        if weight == tail_weight:
            final = lists
    systems["system"] = curve[str(tail_weight)]
    recall = candidate_recall_table(phase, candidates, config.retrieve.sources)
    cuts = ctx.cuts()
    ranker = "XGBoost rank:ndcg (Ray Train)" if config.rank.enabled else "reciprocal-rank blend"
    info = {"cut_valid": cuts.cut_valid, "cut_test": cuts.cut_test, "catalog": int(phase.history.n_items),
            "head": int((phase.segments[S.SEGMENT] == S.HEAD).sum()),
            "tail": int((phase.segments[S.SEGMENT] != S.HEAD).sum()),
            "cold": int((phase.segments[S.SEGMENT] == S.COLD).sum()),
            "eval_users": int(len(phase.users)), "history_users": int(phase.history.n_users),
            "tail_weight": tail_weight, "rerank": config.rerank.method,
            "final_list": f"{ranker} over the union of {', '.join(config.retrieve.sources)}, "
                          f"{config.rerank.method} rerank at tail_weight={tail_weight}"}
    metrics = {"info": info, "systems": systems, "candidate_recall": recall,
               "tradeoff": {w: {key: m[key] for key in ("ndcg@10", "tail_recall@10", "coverage@10", "aplt@10")}
                            for w, m in curve.items()}}
    ctx.store.write_json("metrics.json", metrics)
    ctx.store.write_table("recommendations.parquet", recommendations_frame(phase, final))
    from ray_longtail.report import write_report

    write_report(ctx, metrics, {"system_tw0": ranked_lists(ctx, "eval", scored, 0.0, max(ks)), "system": final})
    return {name: round(values["ndcg@10"], 4) for name, values in systems.items()}
