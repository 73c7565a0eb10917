"""The stage adapters from the ranker on: `rank` (the ranker on Ray Train over the labelled folds, then the final
choice on valid, `choose.py`), `serving` (every recent history user's ranked candidates and the exposure path for
the Serve app) and `evaluate` (the test window's metrics, lists and report). Like `stages.py`: read artifacts
through the `RunContext`, call the library, run the heavy steps on Ray, write the stage's artifacts."""

from __future__ import annotations

import functools
import logging
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
)
from ray_longtail.data import schema as S
from ray_longtail.evaluate import baseline_metrics, candidate_recall_table, recommendations_frame, system_metrics
from ray_longtail.features import features_on_ray
from ray_longtail.precompute import ExposurePaths, PrecomputedLists, ranked_table, serving_users
from ray_longtail.progress import Progress
from ray_longtail.rank import MODEL_FILE, predict, save_ranker, score_on_ray, train_ranker
from ray_longtail.stages import user_candidates

if TYPE_CHECKING:
    from ray_longtail.pipeline import RunContext


log = logging.getLogger(__name__)


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
    return ranker, {"rounds": info.get("member_rounds"), "train_groups": info["train_groups"], "folds": info["folds"]}


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
