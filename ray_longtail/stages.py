"""Stages after embedding: discover, profile, retrieve, evaluate. Each reads earlier artifacts through the
`RunContext`, writes its own, and returns a small summary for the manifest."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from ray_longtail.data import schema as S
from ray_longtail.discover import cluster_items, cluster_labels, cluster_table, discovery_summary
from ray_longtail.embed import item_texts
from ray_longtail.evaluate import (
    BASELINE_NAMES,
    baseline_metrics,
    candidate_recall_table,
    metrics_table,
    rank_by_score,
    recommendations_frame,
    system_metrics,
)
from ray_longtail.profile import profiles_table
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
    """Fit every source on the phase's history and return the long candidate frame for its users."""
    config = ctx.config
    phase = ctx.phase(phase_name)
    users = phase.users
    if phase_name == "fit" and len(users) > config.rank.max_train_users:
        rng = np.random.default_rng(config.seed)
        users = np.sort(rng.choice(users, size=config.rank.max_train_users, replace=False))
    names = list(dict.fromkeys(config.retrieve.sources + list(BASELINE_NAMES)))
    sources = fit_sources(make_sources(config.retrieve, config.seed, names), phase.history, phase.context)
    n = max(config.retrieve.n_per_source, max(config.eval.ks))
    if config.retrieve.use_ray:
        long = candidates_on_ray(sources, users, n, config.retrieve.user_batch_size, config.eval.exclude_seen)
    else:
        long = candidate_union(sources, users, n, config.retrieve.user_batch_size, config.eval.exclude_seen)
    return long.sort_values(["user", "source", "rank"], kind="stable").reset_index(drop=True)


def stage_retrieve(ctx) -> dict[str, Any]:
    summary = {}
    for phase_name, artifact in CANDIDATES.items():
        long = retrieve_phase(ctx, phase_name)
        ctx.store.write_table(artifact, ctx.ids_frame(phase_name, long))
        ctx.cache[artifact] = long
        summary[f"{phase_name}_rows"] = int(len(long))
        summary[f"{phase_name}_users"] = int(long["user"].nunique())
    return summary


def final_lists(ctx, phase_name: str, candidates: pd.DataFrame, k: int) -> pd.DataFrame:
    """The system's final ranked lists (user, item, rank, score, source) for a phase: the reciprocal-rank blend
    of the union of the configured sources."""
    sources = ctx.config.retrieve.sources
    union = candidates[candidates["source"].isin(sources)]
    wide = wide_candidates(union, sources, max(ctx.config.retrieve.n_per_source, k))
    wide["blend"] = reciprocal_rank_blend(wide, sources)
    best_source = np.asarray(sources)[np.argmin(wide[[f"rank_{s}" for s in sources]].to_numpy(), axis=1)]
    wide["source"] = best_source
    ranked = rank_by_score(wide, "blend", k)
    return ranked.rename(columns={"blend": "score"})[["user", "item", "rank", "score", "source"]]


def stage_evaluate(ctx) -> dict[str, Any]:
    config = ctx.config
    ks = config.eval.ks
    phase = ctx.phase("eval")
    candidates = ctx.candidates("eval")
    systems = baseline_metrics(phase, candidates, ks)
    lists = final_lists(ctx, "eval", candidates, max(ks))
    systems["system"] = system_metrics(phase, lists, ks)
    recall = candidate_recall_table(phase, candidates, config.retrieve.sources)
    cuts = ctx.cuts()
    info = {"cut_valid": cuts.cut_valid, "cut_test": cuts.cut_test, "catalog": int(phase.history.n_items),
            "head": int((phase.segments[S.SEGMENT] == S.HEAD).sum()),
            "tail": int((phase.segments[S.SEGMENT] != S.HEAD).sum()),
            "cold": int((phase.segments[S.SEGMENT] == S.COLD).sum()),
            "eval_users": int(len(phase.users)), "history_users": int(phase.history.n_users),
            "final_list": "reciprocal-rank blend of " + ", ".join(config.retrieve.sources)}
    metrics = {"info": info, "systems": systems, "candidate_recall": recall}
    ctx.store.write_json("metrics.json", metrics)
    ctx.store.write_table("recommendations.parquet", recommendations_frame(phase, lists))
    from ray_longtail.report import write_report

    write_report(ctx, metrics, {"system": lists})
    ctx.cache["metrics_table"] = metrics_table(systems)
    return {name: round(values["ndcg@10"], 4) for name, values in systems.items()}
