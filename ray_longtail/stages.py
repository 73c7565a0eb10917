"""The stage adapters from ingest to features (`ranking_stages.py` has rank, serving and evaluate): read earlier
artifacts through the `RunContext`, call the library, run the heavy steps on Ray, write the stage's artifacts, and
return a small summary for the manifest."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ray_longtail import scoring
from ray_longtail.artifacts import (
    FEATURE_NAMES,
    SOURCES_ARTIFACT,
    candidates_artifact,
    features_artifact,
    file_fingerprint,
)
from ray_longtail.data import schema as S
from ray_longtail.data.ingest import ingest
from ray_longtail.data.split import compute_cuts, temporal_split
from ray_longtail.discover import cluster_items, cluster_labels, cluster_table
from ray_longtail.embed import item_texts
from ray_longtail.enrich import enrich_categories
from ray_longtail.errors import UserError
from ray_longtail.features import attach_labels, features_on_ray
from ray_longtail.feedback import with_feedback
from ray_longtail.finetune import tuned_encoder_path
from ray_longtail.profile import profiles_table
from ray_longtail.retrieve import candidate_union, candidates_on_ray
from ray_longtail.sources.registry import fit_sources, make_sources

if TYPE_CHECKING:
    from ray_longtail.pipeline import RunContext

log = logging.getLogger(__name__)


def input_paths(config) -> tuple[str, str]:
    """(items, interactions) URIs: both given, or both bundled."""
    from ray_longtail.data.ingest import bundled_paths

    items, interactions = config.data.items, config.data.interactions
    if (items is None) != (interactions is None):
        raise UserError("give both --items and --interactions (or neither, for the bundled dataset)")
    return (items, interactions) if items else bundled_paths()


def stage_ingest(ctx: RunContext) -> dict[str, Any]:
    items, interactions = input_paths(ctx.config)
    catalog, events, report = ingest(items, interactions, ctx.config.data, ctx.config.privacy)
    events, feedback = with_feedback(catalog, events, ctx.config)
    if feedback is not None:
        report["feedback"] = feedback
    ctx.store.write_table("catalog.parquet", catalog)
    ctx.store.write_table("interactions.parquet", events)
    ctx.store.write_json("ingest_report.json", report)
    ctx.store.update_manifest(inputs={"items": file_fingerprint(items), "interactions": file_fingerprint(interactions)})
    folded = {"feedback_rows": feedback["folded"]} if feedback is not None else {}
    return {"catalog": len(catalog), "interactions": len(events), "drops": report["interactions"]["drops"], **folded}


def stage_split(ctx: RunContext) -> dict[str, Any]:
    events = ctx.table("interactions.parquet")
    cuts = compute_cuts(events[S.TIMESTAMP], ctx.config.split)
    parts = temporal_split(events, cuts)
    for name, frame in parts.items():
        ctx.store.write_table(f"split/{name}.parquet", frame)
    ctx.store.write_json("split/cuts.json", cuts.__dict__)
    return {name: len(frame) for name, frame in parts.items()} | cuts.__dict__


def stage_finetune(ctx: RunContext) -> dict[str, Any]:
    """The encoder fine-tuned on the train split's co-interactions (`finetune.py`), or a marker saying why not."""
    import tempfile

    from ray_longtail.finetune import ENCODER_DIR, finetune_encoder

    config = ctx.config
    if not config.embed.finetune.enabled or config.embed.model == "hashing":
        why = "embed.finetune.enabled is false" if not config.embed.finetune.enabled else "the hashing encoder"
        ctx.store.write_bytes("encoder/_SUCCESS", f"not fine-tuned: {why}".encode())
        return {"finetune": f"skipped ({why})"}
    with tempfile.TemporaryDirectory(prefix="ray_longtail_encoder_") as folder:
        summary = finetune_encoder(ctx.table("catalog.parquet"), ctx.table("split/train.parquet"),
                                   ctx.cuts().cut_valid, config, folder)
        ctx.store.upload_dir(ENCODER_DIR, folder)
    ctx.store.write_json("encoder/finetune.json", summary)
    ctx.store.write_bytes("encoder/_SUCCESS", b"fine-tuned")
    losses = [h["holdout_loss"] for h in summary["history"]]
    return {"pairs": summary["train_pairs"], "holdout_loss_before": round(losses[0], 4),
            "holdout_loss_after": round(losses[-1], 4), "pairs_per_s": summary["pairs_per_s"]}


def stage_embed(ctx: RunContext) -> dict[str, Any]:
    from ray_longtail.embed import embed_items

    catalog = ctx.table("catalog.parquet")
    start = time.perf_counter()
    table = embed_items(catalog, ctx.config.embed, model=tuned_encoder_path(ctx.store))
    seconds = time.perf_counter() - start
    ctx.store.write_table("item_embeddings.parquet", table)
    return {"items": table.num_rows, "dim": table.column(S.VECTOR).type.list_size,
            "items_per_s": round(table.num_rows / seconds, 1)}


def stage_discover(ctx: RunContext) -> dict[str, Any]:
    config = ctx.config
    catalog = ctx.table("catalog.parquet")
    labels, _ = cluster_items(ctx.vectors(), config.discover.n_clusters, seed=config.discover.seed)
    phase = ctx.phase("eval")
    enriched, enrichment = enrich_categories(catalog, ctx.vectors(), config, tuned_encoder_path(ctx.store))
    segments = pd.concat([phase.segments.assign(**{S.CLUSTER: labels}), enriched.set_index(phase.segments.index)],
                         axis=1)
    ctx.store.write_json("enrichment.json", enrichment)
    names = cluster_labels(item_texts(catalog, config.embed.text_fields), labels, config.discover.label_terms)
    clusters = cluster_table(phase.segments, labels, names)
    ctx.store.write_table("item_segments.parquet", segments)
    ctx.store.write_table("clusters.parquet", clusters)
    ctx.forget_phases()
    counts = segments[S.SEGMENT].value_counts().to_dict()
    return {"clusters": int(clusters.shape[0]), **{k: int(v) for k, v in counts.items()},
            "categories_inferred": enrichment.get("inferred", 0)}


def stage_profile(ctx: RunContext) -> dict[str, Any]:
    phase = ctx.phase("eval")
    ctx.store.write_table("user_profiles.parquet", profiles_table(phase.history, phase.context.profiles))
    return {"users": int(phase.history.n_users)}


def fitted_source_names(config) -> list[str]:
    """The union's sources, then the baselines not already among them."""
    return list(dict.fromkeys([*config.retrieve.sources, *config.eval.baselines]))


def retrieve_phase(ctx: RunContext, phase_name: str):
    """Fit every source on the phase's history and return the long candidate frame for its users (the eval
    phase's fitted sources are also saved as `sources/eval.pkl` for serving)."""
    config = ctx.config
    phase = ctx.phase(phase_name)
    users = phase.users
    if phase_name != "eval" and len(users) > config.rank.max_train_users:
        rng = np.random.default_rng(config.seed)
        users = np.sort(rng.choice(users, size=config.rank.max_train_users, replace=False))
    sources = fit_sources(make_sources(config.retrieve, fitted_source_names(config), config.seed), phase.history,
                          phase.context)
    if phase_name == "eval":
        ctx.store.write_pickle(SOURCES_ARTIFACT, sources)
    return user_candidates(config, sources, phase, users)


def user_candidates(config, sources: list, phase, users: np.ndarray, on_ray: bool | None = None):
    """The long candidate frame (user, item, source, score, rank) of `users` from fitted `sources`, on a Ray Data
    actor pool when `on_ray` (default: `retrieve.use_ray`); sorted by user, source, rank."""
    n = max(config.retrieve.n_per_source, max(config.eval.ks))
    if config.retrieve.use_ray if on_ray is None else on_ray:
        import ray

        fitted_ref = ray.put((sources, phase.history, phase.context))
        del sources  # the actors read the object-store copy; the driver keeps none
        long = candidates_on_ray(fitted_ref, phase.history.n_items, users, n, config.retrieve.user_batch_size,
                                 config.eval.exclude_seen, config.retrieve.max_actors)
    else:
        long = candidate_union(sources, phase.history, phase.context, users, n, config.retrieve.user_batch_size,
                               config.eval.exclude_seen)
    return long.sort_values(["user", "source", "rank"], kind="stable").reset_index(drop=True)


def stage_retrieve(ctx: RunContext) -> dict[str, Any]:
    """Candidates of every labelled fold, then of the eval phase. Each phase is dropped before the next is built
    (a later stage rebuilds it), so only one phase's matrices and profiles are in memory."""
    summary = {}
    for phase_name in [*ctx.fold_names(), "eval"]:
        long = retrieve_phase(ctx, phase_name)
        ctx.store.write_table(candidates_artifact(phase_name), ctx.ids_frame(phase_name, long))
        summary[f"{phase_name}_rows"] = int(len(long))
        summary[f"{phase_name}_users"] = int(long["user"].nunique())
        if phase_name == "eval":
            ctx.set_candidates(phase_name, long)
        else:
            ctx.forget_phases()
    return summary


def stage_features(ctx: RunContext) -> dict[str, Any]:
    summary = {}
    for phase_name in [*ctx.fold_names(), "eval"]:
        builder = ctx.builder(phase_name)
        wide = scoring.union_wide(ctx.candidates(phase_name), ctx.config)
        features = features_on_ray(builder, wide) if ctx.config.retrieve.use_ray else builder.transform(wide)
        if phase_name != "eval":
            phase = ctx.phase(phase_name)
            features = attach_labels(features, phase.users, phase.truth)
            summary[f"{phase_name}_positive_rate"] = round(float(features[S.LABEL].mean()), 4)
        ctx.store.write_table(features_artifact(phase_name), features)
        ctx.set_features(phase_name, features)
        summary[f"{phase_name}_rows"] = int(len(features))
    ctx.store.write_json(FEATURE_NAMES, ctx.builder("fit").feature_names)
    return summary
