"""Tune: Ray Tune + Optuna search over n_clusters, candidates per source, XGBoost parameters and the relevance
grade of bought tail candidates (`rank.tail_positive_grade`: it helps on some shops and hurts on others), scored
on the valid window only (fit phase: history = train, labels = valid; the test window is never read).

Each trial re-clusters the item embeddings (TailExplore candidates and the cluster-tail-share feature depend
on it), truncates every source to its top `n_per_source`, trains XGBoost on the training users (and, as the
rank stage does, one ranker per cross-fitting group, `crossfit.py`), re-ranks the selection users' lists and
reports the constrained objective (max NDCG@10 s.t. TailRecall@10 >= floor) at the
tail_weight the rank stage would give this ranker (`choose.select_tail_weight`: the most tail recall within
the accuracy budget). tail_weight is not searched: a free tail_weight maximised over a few hundred held-out
users overfits them (README, synthetic retail profile: a 12-trial search that met the floor on valid missed it
on test, below the default run). Everything goes through the scoring chain's and the choice's own functions
(`scoring.py`, `choose.py`), so a trial scores exactly the system `run` builds for the same config. The best
trial becomes a complete YAML config with `rerank.select_on_valid` kept: `ray-longtail run --config
<tune/best.yaml>` chooses the final scorer and tail_weight on valid as every run does. `tune_run.run_tune`
prepares the trial data and writes the results.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd

from ray_longtail import choose, crossfit, scoring
from ray_longtail.config import Config, replace
from ray_longtail.features import attach_labels
from ray_longtail.phase import Phase
from ray_longtail.progress import log as progress_log
from ray_longtail.progress import progress_line

# rounds: the mean round count of the ranker's members (each early-stopped on its own)
TRIAL_METRICS = ("objective", "tail_weight", "ndcg@10", "tail_recall@10", "coverage@10", "rounds")


@dataclasses.dataclass(frozen=True)
class TrialFold:
    """One labelled fold as a trial reads it: its phase, stored candidates (every source), the ranker's train /
    holdout users and the cross-fitting groups of train users (the rank stage's split, `crossfit.py`)."""

    phase: Phase
    candidates: pd.DataFrame
    train_users: np.ndarray
    holdout_users: np.ndarray
    groups: tuple = ()


@dataclasses.dataclass(frozen=True)
class TrialData:
    """What every trial reads (put in the object store once): the config, the catalog, the labelled folds
    (newest first) and the tail-recall floor on their selection users."""

    config: Config
    catalog: pd.DataFrame
    folds: tuple
    floor: float


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
        "tail_positive_grade": tune.choice([1, 2, 3, 5]),
    }


def trial_config(base: Config, params: dict[str, Any]) -> Config:
    """The full pipeline config a trial stands for (what `best.yaml` holds), built through the validated path."""
    return replace(base, **{
        "run_id": None, "discover.n_clusters": int(params["n_clusters"]),
        "retrieve.n_per_source": int(params["n_per_source"]), "rank.eta": float(params["eta"]),
        "rank.max_depth": int(params["max_depth"]), "rank.min_child_weight": float(params["min_child_weight"]),
        "rank.subsample": float(params["subsample"]), "rank.num_boost_round": int(params["num_boost_round"]),
        "rank.tail_positive_grade": int(params["tail_positive_grade"])})


def trial_features(config: Config, phase: Phase, candidates: pd.DataFrame, catalog: pd.DataFrame,
                   clusters: np.ndarray) -> tuple[pd.DataFrame, list[str]]:
    """A labelled phase's feature rows for the trial's clusters (TailExplore's candidates and the cluster tail
    share recomputed), and the feature names."""
    from ray_longtail.retrieve import candidate_union
    from ray_longtail.sources.registry import make_sources

    if "tail_explore" in config.retrieve.sources:
        context = dataclasses.replace(phase.context, clusters=clusters)
        explore = make_sources(config.retrieve, ["tail_explore"], config.seed)[0].fit(phase.history, context)
        users = np.unique(candidates["user"].to_numpy())
        fresh = candidate_union([explore], phase.history, context, users, config.retrieve.n_per_source,
                                config.retrieve.user_batch_size, config.eval.exclude_seen)
        candidates = pd.concat([candidates[candidates["source"] != "tail_explore"], fresh], ignore_index=True)
    builder = scoring.fit_feature_builder(phase, catalog, config, clusters=clusters)
    features = builder.transform(scoring.union_wide(candidates, config))
    return attach_labels(features, phase.users, phase.truth), builder.feature_names


def evaluate_trial(params: dict[str, Any], data: TrialData) -> dict[str, float]:
    """Score one point of the search space on the folds' selection users, as the rank stage does (the ranker's
    scores cross-fitted, `crossfit.py`; plain, no Ray inside)."""
    from ray_longtail.discover import cluster_items
    from ray_longtail.rank import member_rounds, train_ranker_local

    config = trial_config(data.config, params)
    vectors = data.folds[0].phase.context.vectors
    clusters, _ = cluster_items(vectors, config.discover.n_clusters, seed=config.discover.seed)
    built = [trial_features(config, f.phase, f.candidates, data.catalog, clusters) for f in data.folds]
    names, rounds = built[0][1], 0
    folds = [(features, f.train_users, f.holdout_users, f.groups) for (features, _), f in zip(built, data.folds,
                                                                                               strict=True)]
    users = [crossfit.selection_users(f.holdout_users, f.groups) for f in data.folds]
    rows = [crossfit.selection_rows(features, f.holdout_users, f.groups) for (features, _), f in
            zip(built, data.folds, strict=True)]
    if config.rank.enabled:
        train, valid = scoring.fold_queries([fold[:3] for fold in folds], config.rank.tail_positive_grade)
        booster = train_ranker_local(train, valid, names, config.rank, seed=config.seed)
        scores = crossfit.crossfit_scores(folds, booster, names, config.rank, config.seed)
        rounds = float(np.mean(member_rounds(booster)))
    else:
        scores = [scoring.BlendScorer(config.retrieve.sources).score(frame) for frame in rows]
    parts = []
    for frame, fold_scores, fold, fold_users in zip(rows, scores, data.folds, users, strict=True):
        scored = scoring.scored_candidates(frame, fold_scores, config.retrieve.sources)
        ranked = scoring.rank_candidates(scored, fold.phase.history, fold.phase.is_tail, config.rerank.depth)
        parts.append((choose.restrict_phase(fold.phase, fold_users), ranked))
    chosen = choose.select_tail_weight(parts, config, data.floor)
    return {"objective": chosen["objective"], "tail_weight": chosen["tail_weight"], "ndcg@10": chosen["ndcg@10"],
            "tail_recall@10": chosen["tail_recall@10"], "coverage@10": chosen["coverage@10"], "rounds": round(rounds)}


def trainable(params: dict[str, Any], data: TrialData | None = None) -> None:
    from ray import tune

    tune.report(evaluate_trial(params, data))


def trial_progress(num_samples: int):
    """A Tune callback that logs a progress line (trials done, rate, ETA, best objective) after every trial."""
    from ray.tune import Callback

    class TrialProgress(Callback):
        def __init__(self):
            self.done, self.best, self.start = 0, float("-inf"), time.perf_counter()

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._line(trial, "done")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._line(trial, "failed")

        def _line(self, trial, how: str) -> None:
            self.done += 1
            objective = (trial.last_result or {}).get("objective")
            if objective is not None:
                self.best = max(self.best, float(objective))
            line = progress_line("tune", self.done, num_samples, "trials", time.perf_counter() - self.start)
            progress_log.info(f"{line}; trial {trial.trial_id} {how}, objective {objective}, best {self.best:.4f}")

    return TrialProgress()


def search(data: TrialData, num_samples: int):
    """Run the Optuna search on Ray Tune (Ray must be initialised); returns Tune's ResultGrid."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    config = data.config
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, data=data), {"cpu": 1}),
        param_space=search_space(config),
        tune_config=tune.TuneConfig(metric="objective", mode="max", num_samples=num_samples,
                                    max_concurrent_trials=config.tune.max_concurrent,
                                    search_alg=OptunaSearch(seed=config.tune.seed)),
        run_config=tune.RunConfig(name=f"tune_{int(time.time() * 1000)}", verbose=0,
                                  callbacks=[trial_progress(num_samples)],
                                  storage_path=tempfile.mkdtemp(prefix="ray_longtail_tune_")),
    )
    return tuner.fit()
