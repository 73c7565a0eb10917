"""Cross-fitting: the final-stage choice rests on every labelled user, not only the ranker's held-out share.

The rank stage fits the ranker on each labelled fold's train users and early-stops it on the held-out ones
(`rank.holdout_share`), so the final stage (`choose.select_final`) can compare the ranker with the sources only
on users the ranker never saw. On the held-out users alone, a small shop's choice rests on ~100 users and is
noise (README, design notes: a movie-like shop with 111 held-out users chose a source whose test NDCG@10 was
0.65x the ranker's). Here each fold's train users are split at random into `rank.crossfit_groups` groups (about
the held-out share each at the defaults); for each group a ranker is fit on every other labelled query of every
fold, with the stage ranker's members and their round counts (no early stopping on the users it scores), and
scores that group's rows. Every selection user is then scored by a ranker fit on about as many users as the
stage's and never on their labels. Groups are used only until the selection has `rank.selection_min_users`
users: a large shop's held-out users are already enough, and each group costs a ranker fit and its share of the
selection.

`fold` below is one labelled fold as (feature rows, train users, holdout users, groups of train users).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ray_longtail.config import RankConfig
from ray_longtail.rank import fit_fixed_rounds, member_rounds, predict
from ray_longtail.scoring import fold_queries

GROUP = "crossfit_group"  # the cross-fitting group of a query row's user (-1: held out)


def train_user_groups(train_users: np.ndarray, n_groups: int, seed: int) -> list[np.ndarray]:
    """A fold's train users split at random into `n_groups` groups (a stream apart from the holdout split's)."""
    group = np.random.default_rng([seed, 1]).integers(max(n_groups, 1), size=len(train_users))
    return [train_users[group == g] for g in range(n_groups)]


def groups_to_use(holdout_count: int, min_users: int, n_groups: int) -> int:
    """How many groups join the held-out users so the selection has `min_users` of them (all groups at most)."""
    if holdout_count >= min_users:
        return 0
    return min(n_groups, math.ceil(min_users / max(holdout_count, 1)) - 1)


def selection_users(holdout: np.ndarray, groups: tuple) -> np.ndarray:
    """The users the final stage is chosen on in a fold: the held-out users and every used group."""
    return np.concatenate([holdout, *groups]) if groups else holdout


def selection_rows(features: pd.DataFrame, holdout: np.ndarray, groups: tuple) -> pd.DataFrame:
    """A fold's feature rows of its selection users, in row order (what every option is scored on)."""
    return features[features["user"].isin(selection_users(holdout, groups))]


def group_queries(folds: list, tail_grade: int) -> pd.DataFrame:
    """Every labelled query of every fold (`scoring.fold_queries`, same qids as the stage ranker's), with the
    query's cross-fitting group in `GROUP`."""
    tagged = []
    for features, *_, groups in folds:
        users = np.unique(features["user"].to_numpy())
        group = pd.Series(-1, index=users, dtype=np.int64)
        for g, members in enumerate(groups):
            group.loc[members] = g
        tagged.append((features.assign(**{GROUP: group.reindex(features["user"]).to_numpy()}), users,
                       np.zeros(0, users.dtype)))
    return fold_queries(tagged, tail_grade)[0]


def crossfit_scores(folds: list, booster, feature_names: list[str], config: RankConfig, seed: int,
                    fit_groups=None, score=predict) -> list[np.ndarray]:
    """Per fold, ranker scores of its `selection_rows`: held-out users' rows by `booster` (the stage ranker),
    each group's by a ranker fit without that group's queries. `fit_groups(queries, n_groups, feature_names,
    config, rounds, seed)` fits those rankers (default: in this process, one after another; the rank stage
    passes `fit_groups_on_ray`); `score(booster, rows, feature_names)` scores rows (default: in this process; the
    rank stage scores large frames on Ray Data)."""
    n_groups = max(len(groups) for *_, groups in folds)
    boosters = []
    if n_groups:
        fit = fit_groups or fit_groups_local
        boosters = fit(group_queries(folds, config.tail_positive_grade), n_groups, feature_names, config,
                       member_rounds(booster), seed)
    out = []
    for features, _, holdout, groups in folds:
        rows = selection_rows(features, holdout, groups)
        scores = np.empty(len(rows), dtype=np.float32)
        users = rows["user"].to_numpy()
        for model, members in [(booster, holdout), *zip(boosters, groups, strict=False)]:
            mine = np.isin(users, members)
            scores[mine] = score(model, rows[mine], feature_names)
        out.append(scores)
    return out


def fit_group(queries: pd.DataFrame, group: int, feature_names: list[str], config: RankConfig, rounds: list[int],
              seed: int):
    """The ranker of one cross-fitting group: fit on every query outside it, one member per stage member."""
    return fit_fixed_rounds(queries[queries[GROUP].to_numpy() != group], feature_names, config, rounds, seed)


def fit_groups_local(queries: pd.DataFrame, n_groups: int, feature_names: list[str], config: RankConfig,
                     rounds: list[int], seed: int) -> list:
    """Every group's ranker in this process (what a `tune` trial runs)."""
    return [fit_group(queries, g, feature_names, config, rounds, seed) for g in range(n_groups)]


def fit_groups_on_ray(queries: pd.DataFrame, n_groups: int, feature_names: list[str], config: RankConfig,
                      rounds: list[int], seed: int) -> list:
    """Every group's ranker as a Ray task of `rank.cpus_per_worker` CPUs (the queries put in the object store
    once); the same boosters as `fit_groups_local`."""
    import ray

    queries_ref = ray.put(queries)
    task = ray.remote(num_cpus=config.cpus_per_worker)(fit_group)
    return ray.get([task.remote(queries_ref, g, feature_names, config, rounds, seed) for g in range(n_groups)])
