"""Every stage's thin adapter: read earlier artifacts through the `RunContext`, call the library (the scoring chain in
`scoring.py` and the choice on valid in `choose.py` for everything after retrieval), run the heavy steps on Ray,
write the stage's artifacts, and return a small summary for the manifest."""

from __future__ import annotations

import functools
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ray_longtail import choose, crossfit, scoring
from ray_longtail.artifacts import (
    EXPOSURE_PATHS,
    FEATURE_NAMES,
    SELECTION,
    SERVING_LISTS,
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
from ray_longtail.evaluate import baseline_metrics, candidate_recall_table, recommendations_frame, system_metrics
from ray_longtail.features import attach_labels, features_on_ray
from ray_longtail.feedback import with_feedback
from ray_longtail.finetune import tuned_encoder_path
from ray_longtail.precompute import ExposurePaths, PrecomputedLists, ranked_table, serving_users
from ray_longtail.profile import profiles_table
from ray_longtail.progress import Progress
from ray_longtail.rank import MODEL_FILE, predict, save_ranker, score_on_ray, train_ranker
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


def stage_rank(ctx: RunContext) -> dict[str, Any]:
    """Train the ranker on the labelled folds with Ray Train, then choose the final scorer and its tail_weight on
    the held-out users of every fold and the cross-fitted groups that join them (`crossfit.py`,
    `choose.select_final`)."""
    config = ctx.config
    splits = {name: holdout_users(ctx, name, fold) for fold, name in enumerate(ctx.fold_names())}
    ranker, summary = fit_ranker(ctx, splits)
    folds = selection_folds(ctx, splits)
    rows = {name: crossfit.selection_rows(features, holdout, groups)
            for name, (features, _, holdout, groups) in folds.items()}
    phases = {name: choose.restrict_phase(ctx.phase(name), crossfit.selection_users(holdout, groups))
              for name, (_, _, holdout, groups) in folds.items()}
    options = {option: [(phases[name], ranked_candidates(ctx, name, rows[name], scorer)) for name in folds]
               for option, scorer in scoring.selection_options(config, None).items()}
    if ranker is not None:
        scores = crossfit.crossfit_scores(list(folds.values()), ranker.booster, ranker.feature_names, config.rank,
                                          config.seed, fit_groups=crossfit.fit_groups_on_ray,
                                          score=functools.partial(booster_scores, ctx))
        options["ranker"] = [(phases[name], ranked_rows(ctx, name, rows[name], fold_scores))
                             for name, fold_scores in zip(folds, scores, strict=True)]
    selection = choose.select_final(options, [(phases[name], ctx.candidates(name)) for name in folds], config)
    selection["crossfit_groups"] = max(len(fold[3]) for fold in folds.values())
    ctx.store.write_json(SELECTION, selection)
    ctx.forget_phases()  # the folds' phases are not needed after the choice
    log.info("final scorer %s at tail_weight %s, chosen on %d users (%s)", selection["scorer"],
             selection["selected"], selection["selection_users"], selection["reason"])
    return summary | {"scorer": selection["scorer"], "selected_tail_weight": selection["selected"],
                      "selection_users": selection["selection_users"]}


def holdout_users(ctx: RunContext, name: str, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train users, holdout users) of a labelled fold: a seeded `rank.holdout_share` of its users."""
    users = np.unique(ctx.features(name)["user"].to_numpy())
    return choose.holdout_split(users, ctx.config.rank.holdout_share, ctx.config.seed + fold)


def selection_folds(ctx: RunContext, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple]:
    """Per labelled fold, (feature rows, train users, holdout users, cross-fitting groups): as many groups of
    each fold's train users as `crossfit.groups_to_use` allows for the held-out users of all folds."""
    rank, seed = ctx.config.rank, ctx.config.seed
    used = crossfit.groups_to_use(sum(len(holdout) for _, holdout in splits.values()), rank.selection_min_users,
                                  rank.crossfit_groups)
    return {name: (ctx.features(name), train, holdout,
                   tuple(crossfit.train_user_groups(train, rank.crossfit_groups, seed + fold)[:used]))
            for fold, (name, (train, holdout)) in enumerate(splits.items())}


def fit_ranker(ctx: RunContext, splits: dict[str, tuple[np.ndarray, np.ndarray]]):
    """(RankerScorer or None, summary): the ranker trained on Ray Train over every labelled fold (early stopping
    on the folds' held-out users), or None (with the reason in `ranker/_SUCCESS` and the log) when it is disabled
    or no query has a bought candidate on one side of the split: the final stage then chooses among the sources
    and the blend."""
    config = ctx.config
    if not config.rank.enabled:
        ctx.store.write_bytes("ranker/_SUCCESS", b"ranker disabled (rank.enabled=false)")
        return None, {"ranker": "disabled"}
    names = ctx.store.read_json(FEATURE_NAMES)
    folds = [(ctx.features(name), train, holdout) for name, (train, holdout) in splits.items()]
    train, valid = scoring.fold_queries(folds, config.rank.tail_positive_grade)
    if train.empty or valid.empty:
        reason = (f"ranker not trained: {train[S.QID].nunique()} training and {valid[S.QID].nunique()} held-out "
                  "users have a bought item among their candidates (a longer split.valid_days or more rank.folds "
                  "gives it more); the final stage chooses among the sources and the blend")
        log.warning(reason)
        ctx.store.write_bytes("ranker/_SUCCESS", reason.encode())
        return None, {"ranker": reason}
    booster, info = train_ranker(train, valid, names, config.rank, storage_path=config.rank.storage_path,
                                 seed=config.seed)
    info.update(train_groups=int(train[S.QID].nunique()), holdout_groups=int(valid[S.QID].nunique()),
                folds=len(folds))
    save_ranker(ctx.store, booster, names, info)
    ranker = scoring.RankerScorer(booster, names)
    ctx.set_ranker(ranker)
    return ranker, {"rounds": info.get("rounds"), "train_groups": info["train_groups"], "folds": info["folds"]}


def ranked_candidates(ctx: RunContext, phase_name: str, features, scorer) -> scoring.RankedCandidates:
    """Score feature rows (the ranker on a Ray Data actor pool when `rank.score_on_ray` and there are at least
    `rank.ray_scoring_rows` of them: below that an actor pool's start-up costs more than the scoring) and rank
    them."""
    if isinstance(scorer, scoring.RankerScorer):
        scores = booster_scores(ctx, scorer.booster, features, scorer.feature_names)
    else:
        scores = scorer.score(features)
    return ranked_rows(ctx, phase_name, features, scores)


def booster_scores(ctx: RunContext, booster, features: pd.DataFrame, feature_names: list[str]) -> np.ndarray:
    """A ranker's scores of feature rows: on a Ray Data actor pool from `rank.ray_scoring_rows` rows on (when
    `rank.score_on_ray`), in this process below (the same scores)."""
    rank = ctx.config.rank
    if rank.score_on_ray and len(features) >= rank.ray_scoring_rows:
        return score_on_ray(booster, features, feature_names)
    return predict(booster, features, feature_names)


def ranked_rows(ctx: RunContext, phase_name: str, features, scores: np.ndarray) -> scoring.RankedCandidates:
    """Feature rows with their scores, ranked per user over the phase's history."""
    phase = ctx.phase(phase_name)
    scored = scoring.scored_candidates(features, scores, ctx.config.retrieve.sources)
    return scoring.rank_candidates(scored, phase.history, phase.is_tail, ctx.config.rerank.depth)


EXPOSURE_FALLBACK_USERS = 2000  # history users run through the chain to count exposure when none is precomputed


def stage_serving(ctx: RunContext) -> dict[str, Any]:
    """Ranked candidates of the eval phase's `serve.precompute_users` most recently active history users with the
    final scorer (`precompute.py`): what the Serve app answers known users from. The same chain as `evaluate`
    (retrieve -> features -> score -> rank), in chunks of `serve.precompute_chunk_users` users (bounded memory),
    on Ray Data actor pools for chunks of at least `serve.precompute_ray_users` users. Then the re-ranker's
    exposure paths over those users (`serving/exposure.npz`), or, when none is precomputed, over a seeded sample of
    `EXPOSURE_FALLBACK_USERS` history users run through the same chain (~2 ms each)."""
    config = ctx.config
    phase = ctx.phase("eval")
    users = serving_users(phase.history, config.serve.precompute_users, config.serve.precompute_days)
    scorer_name, selected = final_choice(ctx)
    chain = (ctx.store.read_pickle(SOURCES_ARTIFACT), ctx.builder("eval"), ctx.scorer(scorer_name))
    tables, progress = [], Progress("serving", len(users), "users", every_s=0.0)
    for start in range(0, len(users), config.serve.precompute_chunk_users):
        chunk = users[start: start + config.serve.precompute_chunk_users]
        ranked = chain_ranked(ctx, *chain, chunk)
        tables.append(ranked_table(ranked, chunk, phase.history, config.retrieve.sources, config.eval.exclude_seen))
        progress.advance(len(chunk))
    if not tables:  # serve.precompute_users = 0: an empty table (every request is computed on demand)
        depth = config.rerank.depth
        none = scoring.RankedCandidates(users=np.zeros(0, np.int64), items=np.zeros((0, depth), np.int64),
                                        scores=np.zeros((0, depth)), sources=np.zeros((0, depth), object),
                                        appetite=np.zeros(0))
        tables.append(ranked_table(none, users, phase.history, config.retrieve.sources, config.eval.exclude_seen))
    table = pa.concat_tables(tables)
    ctx.store.write_table(SERVING_LISTS, table)
    if len(users):
        stored = PrecomputedLists.from_table(table, phase.history)
        population = stored.population(scoring.exposure_rows(stored.items, config))
    else:
        sample = np.random.default_rng(config.seed).permutation(phase.history.n_users)[:EXPOSURE_FALLBACK_USERS]
        population = chain_ranked(ctx, *chain, np.sort(sample))
    paths = exposure_paths(population, phase.is_tail, config, selected)
    ctx.store.write_bytes(EXPOSURE_PATHS, paths.to_bytes())
    return {"users": int(len(users)), "of_history_users": int(phase.history.n_users), "scorer": scorer_name,
            "mb": round(table.nbytes / 2**20, 1), "exposure_weights": paths.weights.tolist()}


def chain_ranked(ctx: RunContext, sources: list, builder, scorer, users: np.ndarray) -> scoring.RankedCandidates:
    """The eval phase's ranked candidates of `users` by the scoring chain (retrieve -> features -> score -> rank),
    on Ray Data actor pools for at least `serve.precompute_ray_users` users."""
    config, phase = ctx.config, ctx.phase("eval")
    on_ray = config.retrieve.use_ray and len(users) >= config.serve.precompute_ray_users
    wide = scoring.union_wide(user_candidates(config, sources, phase, users, on_ray), config)
    features = features_on_ray(builder, wide) if on_ray else builder.transform(wide)
    return ranked_candidates(ctx, "eval", features, scorer)


def exposure_paths(population: scoring.RankedCandidates, is_tail: np.ndarray, config,
                   selected: float) -> ExposurePaths:
    """The re-ranker's exposure path over `population` at every curve weight and the selected one where exposure
    costs something: what `evaluate` and the Serve app re-rank with, so served lists equal the batch job's."""
    weights = sorted(w for w in {*config.eval.tail_weights, selected} if scoring.exposure_cost(w, config) > 0)
    paths = {w: scoring.population_exposure(population, max(config.eval.ks), w, config, is_tail) for w in weights}
    paths = {w: path for w, path in paths.items() if path is not None}
    steps = min(max(config.eval.ks), config.rerank.depth) + 1
    stacked = np.stack(list(paths.values())) if paths else np.zeros((0, steps, len(is_tail)), np.float32)
    return ExposurePaths(weights=np.asarray(list(paths), dtype=np.float64), paths=stacked.astype(np.float32))


def final_choice(ctx: RunContext) -> tuple[str, float]:
    selection = ctx.store.read_json(SELECTION) if ctx.store.exists(SELECTION) else None
    return choose.final_choice(ctx.config, selection)


def stage_evaluate(ctx: RunContext) -> dict[str, Any]:
    config = ctx.config
    phase = ctx.phase("eval")
    candidates = ctx.candidates("eval")
    features = ctx.features("eval")
    systems = baseline_metrics(phase, candidates, config.eval.baselines, config.eval.ks)
    scorer_name, tail_weight = final_choice(ctx)
    for name in ("blend", "ranker"):  # the combiners alone (tail_weight 0), whether chosen or not
        if name != "ranker" or ctx.store.exists(f"ranker/{MODEL_FILE}"):
            ranked = ranked_candidates(ctx, "eval", features, ctx.scorer(name))
            systems[name.capitalize()] = system_metrics(phase, scoring.phase_lists(phase, ranked, 0.0, config),
                                                        config.eval.ks)
    ranked = ranked_candidates(ctx, "eval", features, ctx.scorer(scorer_name))
    paths = ExposurePaths.from_bytes(ctx.store.read_bytes(EXPOSURE_PATHS)) if ctx.store.exists(EXPOSURE_PATHS) \
        else None
    curve, lists = {}, {}
    for weight in sorted(set(config.eval.tail_weights) | {0.0, tail_weight}):
        path = paths.for_weight(weight) if paths is not None else None
        lists[weight] = scoring.phase_lists(phase, ranked, weight, config, path=path)
        curve[str(weight)] = system_metrics(phase, lists[weight], config.eval.ks)
    systems["system_tw0"] = curve["0.0"]
    systems["system"] = curve[str(tail_weight)]
    metrics = {"info": evaluation_info(ctx, phase, scorer_name, tail_weight), "systems": systems,
               "candidate_recall": candidate_recall_table(phase, candidates, config.retrieve.sources),
               "tradeoff": {w: {key: m[key] for key in choose.CURVE_METRICS} for w, m in curve.items()}}
    if ctx.store.exists(SELECTION):
        metrics["selection"] = selection_summary(ctx.store.read_json(SELECTION))
    ctx.store.write_table("recommendations.parquet", recommendations_frame(phase, lists[tail_weight]))
    from ray_longtail.report import write_report

    write_report(ctx, metrics, {"system_tw0": lists[0.0], "system": lists[tail_weight]})
    ctx.store.write_json("metrics.json", metrics)  # last: its presence is what marks the run finished
    return {name: round(values["ndcg@10"], 4) for name, values in systems.items()}


LEAD_KEYS = ("best_single_source_name", "lead", "lead_error", "lead_bound", "lead_users", "lead_confidence")


def selection_summary(selection: dict) -> dict:
    """`metrics.json` → `selection`: every option's valid metrics at its tail_weight, and the choice."""
    options = {name: {key: value for key, value in option.items() if key != "curve"}
               for name, option in selection["options"].items()}
    return {"scorer": selection["scorer"], "tail_weight": selection["selected"], "reason": selection["reason"],
            "floor_tail_recall@10": selection["floor_tail_recall@10"],
            "selection_users": selection.get("selection_users", selection.get("holdout_users")),  # older runs
            "crossfit_groups": selection.get("crossfit_groups", 0),
            "best_single_source": selection["best_single_source"], "budget_reference": selection["budget_reference"],
            **{key: selection[key] for key in LEAD_KEYS if key in selection},  # older runs lack them
            "options": options}


def evaluation_info(ctx: RunContext, phase, scorer_name: str, tail_weight: float) -> dict[str, Any]:
    """`metrics.json` → `info`: the cuts, catalog segments, users and what the final list is."""
    config = ctx.config
    cuts = ctx.cuts()
    ranker = {"ranker": "XGBoost rank:ndcg (Ray Train)", "blend": "reciprocal-rank blend"}.get(
        scorer_name, f"source {scorer_name} alone")
    segment = phase.segments[S.SEGMENT]
    return {"cut_valid": cuts.cut_valid, "cut_test": cuts.cut_test, "catalog": int(phase.history.n_items),
            "head": int((segment == S.HEAD).sum()), "tail": int((segment != S.HEAD).sum()),
            "cold": int((segment == S.COLD).sum()), "eval_users": int(len(phase.users)),
            "history_users": int(phase.history.n_users), "scorer": scorer_name, "tail_weight": tail_weight,
            "rerank": config.rerank.method,
            "final_list": f"{ranker} over the union of {', '.join(config.retrieve.sources)}, "
                          f"{config.rerank.method} rerank at tail_weight={tail_weight}"}
