"""The scoring chain, once, for `run`, `tune` and `serve`: candidate union -> features -> scorer (the XGBoost
ranker or the reciprocal-rank blend) -> ranked candidate matrix -> tail-aware re-rank; the choice of scorer and
tail_weight on the valid window that these lists feed is `choose.py`.

Pure functions over a `Phase`, fitted sources, a `FeatureBuilder`, a scorer and the config: no `RunContext`, no
file I/O, no Ray (the stage adapters in `stages.py` and `ranking_stages.py` run the heavy steps on Ray and call
these for the rest).
Shapes: `long` candidates are (user, item, source, score, rank) rows; `wide` candidates one row per (user, item)
with `score_<source>` / `rank_<source>` columns; `RankedCandidates` the top `depth` scored candidates per user.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ray_longtail.config import Config
from ray_longtail.features import FeatureBuilder
from ray_longtail.history import History
from ray_longtail.phase import Phase
from ray_longtail.rerank import (
    candidate_matrix,
    exposure_path,
    exposure_weight,
    greedy_positions,
    ranked_rows,
    rerank,
    tail_appetite,
)

# ------------------------------------------------------------------------------------------------ union
Columns = Mapping[str, np.ndarray]  # a pandas DataFrame or a dict of equal-length column arrays


def column(frame: Columns | pd.DataFrame, name: str, dtype=None) -> np.ndarray:
    """One column of a frame or of a dict of arrays as a NumPy array (the chain's functions take either: batch
    stages pass DataFrames, a one-user serving request dicts, which skip pandas' per-column costs)."""
    return np.asarray(frame[name], dtype=dtype)


def wide_candidates(long: Columns | pd.DataFrame, source_names: list[str], n: int) -> pd.DataFrame:
    """One row per (user, item), sorted: `score_<source>` (NaN if absent) and `rank_<source>` (n + 1 if absent)."""
    return pd.DataFrame(wide_columns(long, source_names, n))


def wide_columns(long: Columns | pd.DataFrame, source_names: list[str], n: int) -> dict[str, np.ndarray]:
    """`wide_candidates` as a dict of column arrays."""
    users = column(long, "user", np.int64)
    items = column(long, "item", np.int64)
    span = int(items.max()) + 1 if len(items) else 1
    keys, codes = np.unique(users * span + items, return_inverse=True)
    out = {"user": keys // span, "item": keys % span}
    source = column(long, "source", object)
    score = column(long, "score", np.float32)
    rank = column(long, "rank", np.int32)
    for name in source_names:
        mask = source == name
        score_col = np.full(len(keys), np.nan, dtype=np.float32)
        rank_col = np.full(len(keys), n + 1, dtype=np.int32)
        score_col[codes[mask]] = score[mask]
        rank_col[codes[mask]] = rank[mask]
        out[f"score_{name}"], out[f"rank_{name}"] = score_col, rank_col
    return out


def union_wide(candidates: Columns | pd.DataFrame, config: Config) -> pd.DataFrame:
    """The candidate union of the configured sources (top n_per_source each), one row per (user, item)."""
    return pd.DataFrame(union_columns(candidates, config))


def union_columns(candidates: Columns | pd.DataFrame, config: Config) -> dict[str, np.ndarray]:
    """`union_wide` as a dict of column arrays."""
    sources, n = config.retrieve.sources, config.retrieve.n_per_source
    keep = np.isin(column(candidates, "source", object), sources) & (column(candidates, "rank") <= n)
    union = {name: column(candidates, name)[keep] for name in ("user", "item", "source", "score", "rank")}
    return wide_columns(union, sources, n)


# ------------------------------------------------------------------------------------------------ features
def cluster_tail_share(clusters: np.ndarray, is_tail: np.ndarray) -> np.ndarray:
    """(n_items,) share of tail items in each item's cluster."""
    share = np.bincount(clusters, weights=is_tail.astype(np.float64)) / np.maximum(np.bincount(clusters), 1)
    return share[clusters]


def fit_feature_builder(phase: Phase, catalog: pd.DataFrame, config: Config,
                        clusters: np.ndarray | None = None) -> FeatureBuilder:
    """The phase's fitted FeatureBuilder; cluster tail shares on the phase's own history (`clusters` default:
    the phase's)."""
    clusters = phase.context.clusters if clusters is None else clusters
    context = phase.context if clusters is phase.context.clusters else replace(phase.context, clusters=clusters)
    return FeatureBuilder(config.retrieve.sources, config.rank.last_n_history).fit(
        phase.history, context, catalog, cluster_tail_share(clusters, phase.is_tail))


def training_queries(features: pd.DataFrame, train_users: np.ndarray,
                     holdout_users: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, valid) query groups for the ranker: labelled feature rows of the users with at least one bought
    candidate (a query without a positive teaches a ranker nothing), with `qid` = the user index."""
    with_positive = features.groupby("user")["label"].max()
    positive = with_positive[with_positive > 0].index.to_numpy()
    frame = features.assign(qid=features["user"].astype(np.int64))
    train = frame[frame["user"].isin(np.intersect1d(train_users, positive))]
    valid = frame[frame["user"].isin(np.intersect1d(holdout_users, positive))]
    return train, valid


def graded_tail_labels(frame: pd.DataFrame, tail_grade: int) -> pd.DataFrame:
    """Bought tail candidates get relevance grade `tail_grade` (head ones keep 1): `rank:ndcg`'s gain 2^grade − 1
    up-weights the tail positives the popularity-heavy history under-represents (an inverse-propensity knob,
    `rank.tail_positive_grade`; 1 = off)."""
    if tail_grade == 1 or frame.empty:
        return frame
    tail_positive = (frame["label"].to_numpy() > 0) & (frame["is_tail"].to_numpy() > 0)
    return frame.assign(label=np.where(tail_positive, float(tail_grade), frame["label"].to_numpy()))


def fold_queries(folds: list[tuple[pd.DataFrame, np.ndarray, np.ndarray]],
                 tail_grade: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, valid) query groups over the labelled folds, each given as (feature rows, train users, holdout
    users): every fold's `training_queries`, its qids offset past every earlier fold's (each fold has its own user
    indices; XGBoost keeps qids as 32-bit integers, so the offsets stay dense). Tail positives are graded
    `tail_grade` (`graded_tail_labels`). Earlier folds only hold labels before the valid window."""
    trains, valids, offset = [], [], 0
    for features, train_users, holdout_users in folds:
        train, valid = training_queries(features, train_users, holdout_users)
        trains.append(train.assign(qid=train["qid"] + offset))
        valids.append(valid.assign(qid=valid["qid"] + offset))
        offset += int(features["user"].max()) + 1 if len(features) else 0
    return (graded_tail_labels(pd.concat(trains, ignore_index=True), tail_grade),
            graded_tail_labels(pd.concat(valids, ignore_index=True), tail_grade))


# ------------------------------------------------------------------------------------------------ scorers
class BlendScorer:
    """Reciprocal rank fusion over the union's sources, Σ_s 1 / (k + rank_s) over sources proposing the item
    (Cormack et al. 2009): robust to the sources' incomparable score scales."""

    name = "blend"

    def __init__(self, source_names: list[str], k: float = 60.0):
        self.source_names, self.k = list(source_names), k

    def score(self, wide: Columns | pd.DataFrame) -> np.ndarray:
        total = np.zeros(len(column(wide, "user")), dtype=np.float64)
        for name in self.source_names:
            score = column(wide, f"score_{name}")
            rank = column(wide, f"rank_{name}", np.float64)
            total += np.where(np.isnan(score), 0.0, 1.0 / (self.k + rank))
        return total


class SourceScorer:
    """One source's own order over the union: the items it proposes first, in its rank order (so its top-K is
    the source's own list), then the rest of the union in blend order (so a re-ranker can still reach them)."""

    def __init__(self, source: str, source_names: list[str], k: float = 60.0):
        self.source, self.name = source, source
        self.blend = BlendScorer(source_names, k)

    def score(self, wide: Columns | pd.DataFrame) -> np.ndarray:
        proposed = ~np.isnan(column(wide, f"score_{self.source}", np.float64))
        own = 2.0 + 1.0 / (self.blend.k + column(wide, f"rank_{self.source}", np.float64))
        return np.where(proposed, own, self.blend.score(wide))  # a blend sums < 1: proposed items come first


class RankerScorer:
    """The trained XGBoost ranker over the feature rows."""

    name = "ranker"

    def __init__(self, booster, feature_names: list[str]):
        self.booster, self.feature_names = booster, list(feature_names)

    def score(self, features: Columns | pd.DataFrame) -> np.ndarray:
        from ray_longtail.rank import predict

        return predict(self.booster, features, self.feature_names)


def selection_options(config: Config, ranker: RankerScorer | None) -> dict:
    """The scorers the final stage chooses among, simplest first: each union source alone, the blend, the
    ranker (when trained)."""
    sources = config.retrieve.sources
    simplest_first = sorted(sources, key=lambda name: name != "popular")  # exact ties go to MostPopular first
    options: dict = {name: SourceScorer(name, sources) for name in simplest_first}
    options["blend"] = BlendScorer(sources)
    if ranker is not None:
        options["ranker"] = ranker
    return options


def best_source(wide: Columns | pd.DataFrame, source_names: list[str]) -> np.ndarray:
    """Per row, the source that ranks the candidate best (first in `source_names` order on ties)."""
    ranks = np.stack([column(wide, f"rank_{s}") for s in source_names], axis=1)
    return np.asarray(source_names, dtype=object)[np.argmin(ranks, axis=1)]


def scored_candidates(features: Columns | pd.DataFrame, scores: np.ndarray, source_names: list[str]) -> pd.DataFrame:
    """(user, item, score, source) of the feature rows with their scores and best-ranked source."""
    return pd.DataFrame(scored_columns(features, scores, source_names))


def scored_columns(features: Columns | pd.DataFrame, scores: np.ndarray,
                   source_names: list[str]) -> dict[str, np.ndarray]:
    """`scored_candidates` as a dict of column arrays."""
    return {"user": column(features, "user"), "item": column(features, "item"), "score": np.asarray(scores),
            "source": best_source(features, source_names)}


# ------------------------------------------------------------------------------------------------ lists
@dataclass(frozen=True)
class RankedCandidates:
    """The tail_weight-independent part of the final lists: per user (users (u,)), the top `depth` candidates
    by score (items (u, depth) -1 padded, scores (u, depth) -inf padded, sources (u, depth) best source names)
    and the user's tail appetite (u,)."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    sources: np.ndarray
    appetite: np.ndarray


def rank_candidates(scored: Columns | pd.DataFrame, history: History, is_tail: np.ndarray, depth: int,
                    appetite: np.ndarray | None = None) -> RankedCandidates:
    """Scored candidates (user, item, score, source) -> `RankedCandidates`; `appetite` default: from the
    history rows of the users."""
    users, items, scores, rows = ranked_rows(column(scored, "user"), column(scored, "item"),
                                             column(scored, "score", np.float64), depth)
    sources = np.where(rows >= 0, column(scored, "source", object)[np.maximum(rows, 0)], None)
    if appetite is None:
        appetite = tail_appetite(history.binary, is_tail, users)
    return RankedCandidates(users=users, items=items, scores=scores, sources=sources, appetite=appetite)


def exposure_cost(tail_weight: float, config: Config) -> float:
    """The re-ranker's exposure cost w(λ) at `tail_weight` with the configured method and strength."""
    if config.rerank.method == "mmr":
        return 0.0
    return exposure_weight(tail_weight, config.rerank.exposure_strength, config.rerank.exposure_from)


def population_exposure(ranked: RankedCandidates, k: int, tail_weight: float, config: Config,
                        is_tail: np.ndarray) -> np.ndarray | None:
    """The exposure path (min(k, depth) + 1, n_items) of these users' lists at `tail_weight`, counted over those
    with candidates, a seeded sample of at most `rerank.exposure_users` of them (costs are shares of the most
    exposed item, so a sample of a large population gives nearly the same path); None when the cost is 0 there or
    no user has a candidate."""
    cost = exposure_cost(tail_weight, config)
    rows = exposure_rows(ranked.items, config)
    if cost == 0.0 or not len(rows):
        return None
    return exposure_path(ranked.items[rows], ranked.scores[rows], k, tail_weight, config.rerank.method, is_tail,
                         ranked.appetite[rows], cost)


def exposure_rows(items: np.ndarray, config: Config) -> np.ndarray:
    """Rows of a ranked candidate matrix whose exposure is counted: those with a candidate, a seeded sample of at
    most `rerank.exposure_users` of them (ascending)."""
    rows = np.flatnonzero(items[:, 0] >= 0) if items.size else np.zeros(0, np.int64)
    if len(rows) > config.rerank.exposure_users:
        rows = np.sort(np.random.default_rng(config.seed).choice(rows, config.rerank.exposure_users, replace=False))
    return rows


def rerank_lists(ranked: RankedCandidates, k: int, tail_weight: float, config: Config, is_tail: np.ndarray,
                 vectors: np.ndarray, users_per_chunk: int = 512, path: np.ndarray | None = None) -> pd.DataFrame:
    """Final top-k lists (user, item, rank, score, source) at `tail_weight` with the configured re-ranker, in
    chunks of users (MMR holds a (users, depth, dim) block of candidate vectors). Exposure costs follow `path`
    (default: the path of these users' own lists, `population_exposure`)."""
    cost = exposure_cost(tail_weight, config)
    if cost and path is None:
        path = population_exposure(ranked, k, tail_weight, config, is_tail)
    parts = []
    for start in range(0, max(len(ranked.users), 1), users_per_chunk):
        rows = slice(start, start + users_per_chunk)
        lists = rerank(ranked.users[rows], ranked.items[rows], ranked.scores[rows], k, tail_weight,
                       config.rerank.method, is_tail=is_tail, appetite=ranked.appetite[rows], vectors=vectors,
                       exposure_cost=cost, exposure_path=path)
        row = start + np.searchsorted(ranked.users[rows], lists["user"].to_numpy())
        parts.append(lists.drop(columns="position").assign(source=ranked.sources[row, lists["position"].to_numpy()]))
    return pd.concat(parts, ignore_index=True)


def rerank_user(ranked: RankedCandidates, k: int, tail_weight: float, config: Config, is_tail: np.ndarray,
                vectors: np.ndarray, path: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`rerank_lists` of a one-user `RankedCandidates` without building frames (the request path): (items,
    scores as float32, sources), each of at most k. Exposure costs follow `path` (the batch job's, from
    `serving/exposure.npz`); without one a single user has no exposure to count."""
    cost = exposure_cost(tail_weight, config) if path is not None else 0.0
    chosen = greedy_positions(ranked.items, ranked.scores, k, tail_weight, config.rerank.method, is_tail=is_tail,
                              appetite=ranked.appetite, vectors=vectors, exposure_cost=cost, exposure_path=path)[0]
    chosen = chosen[chosen >= 0]
    return ranked.items[0, chosen], ranked.scores[0, chosen].astype(np.float32), ranked.sources[0, chosen]


def phase_lists(phase: Phase, ranked: RankedCandidates, tail_weight: float, config: Config,
                path: np.ndarray | None = None) -> pd.DataFrame:
    """`rerank_lists` at the largest evaluated cut-off, with the phase's tail flags and item vectors."""
    return rerank_lists(ranked, max(config.eval.ks), tail_weight, config, phase.is_tail, phase.context.vectors,
                        path=path)


def cold_start_lists(popularity: np.ndarray, vectors: np.ndarray, k: int, tail_weight: float,
                     depth: int) -> pd.DataFrame:
    """A user without history: the most popular items, diversified over embeddings (MMR, λ = max(tail_weight,
    0.3)); (user 0, item, rank, score) rows."""
    top = np.argsort(-popularity, kind="stable")[: max(depth, k)]
    frame = pd.DataFrame({"user": 0, "item": top, "score": np.log1p(popularity[top]).astype(np.float32)})
    users, items, values = candidate_matrix(frame, depth)
    return rerank(users, items, values, k, max(tail_weight, 0.3), "mmr", vectors=vectors)
