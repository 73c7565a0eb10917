"""Retrieve: content sources (ContentKNN, TailExplore), the source registry, and the candidate union.

`candidate_union` runs every source over batches of users and returns one long frame
(user, item, source, score, rank); `wide_candidates` pivots it to one row per (user, item) with each source's
score and rank as columns (a missing rank is `n + 1`, a missing score NaN). `candidates_on_ray` runs the same
batches on a Ray Data actor pool over user shards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ray_longtail.baselines import ALS, EASE, ItemKNN, MostPopular
from ray_longtail.candidates import CandidateSource, History, SourceContext
from ray_longtail.config import RetrieveConfig
from ray_longtail.errors import ConfigError

log = logging.getLogger(__name__)


class ContentKNN(CandidateSource):
    """Cosine of item embeddings to the user's profile vector."""

    name = "content"

    def fit(self, history: History, context: SourceContext) -> ContentKNN:
        self.history_, self.context_ = history, context
        return self

    def score_rows(self, rows: sp.csr_matrix, profiles: np.ndarray | None) -> np.ndarray:
        return profiles @ self.context_.vectors.T

    def score_batch(self, users: np.ndarray) -> np.ndarray:
        return self.context_.profile_scores(users).copy()


class TailExplore(CandidateSource):
    """Tail and cold items nearest to the user's profile, within the user's `n_clusters` strongest clusters
    (cluster strength = the user's history items per cluster)."""

    name = "tail_explore"

    def __init__(self, n_clusters: int = 3):
        self.n_clusters = n_clusters

    def fit(self, history: History, context: SourceContext) -> TailExplore:
        self.history_, self.context_ = history, context
        self.clusters_ = np.asarray(context.clusters, dtype=np.int64)
        self.is_tail_ = np.asarray(context.is_tail, dtype=bool)
        n_clusters = int(self.clusters_.max()) + 1 if len(self.clusters_) else 1
        self.item_cluster_ = sp.csr_matrix((np.ones(history.n_items, dtype=np.float32),
                                            (np.arange(history.n_items), self.clusters_)),
                                           shape=(history.n_items, n_clusters))
        return self

    def allowed_items(self, rows: sp.csr_matrix) -> np.ndarray:
        """(n_rows, n_items) bool: tail items in each row's `n_clusters` strongest clusters."""
        strength = (rows @ self.item_cluster_).toarray()
        c = min(self.n_clusters, strength.shape[1])
        top = np.argpartition(-strength, c - 1, axis=1)[:, :c]
        top = np.where(np.take_along_axis(strength, top, axis=1) > 0, top, -1)
        allowed = np.zeros_like(strength, dtype=bool)
        np.put_along_axis(allowed, np.maximum(top, 0), top >= 0, axis=1)
        return allowed[:, self.clusters_] & self.is_tail_[None, :]

    def score_rows(self, rows: sp.csr_matrix, profiles: np.ndarray | None) -> np.ndarray:
        return np.where(self.allowed_items(rows), profiles @ self.context_.vectors.T, -np.inf)

    def score_batch(self, users: np.ndarray) -> np.ndarray:
        return np.where(self.allowed_items(self.history_.binary[users]), self.context_.profile_scores(users), -np.inf)


SOURCES = {"content": ContentKNN, "itemknn": ItemKNN, "ease": EASE, "als": ALS, "popular": MostPopular,
           "tail_explore": TailExplore}


def make_sources(config: RetrieveConfig, seed: int = 0, names: list[str] | None = None) -> list[CandidateSource]:
    """Unfitted sources named in `names` (default `config.sources`), with their parameters from the config."""
    made: list[CandidateSource] = []
    for name in config.sources if names is None else names:
        if name not in SOURCES:
            raise ConfigError(f"retrieve.sources: unknown source {name!r}; known: {', '.join(SOURCES)}")
        if name == "itemknn":
            made.append(ItemKNN(neighbors=config.itemknn_neighbors))
        elif name == "ease":
            made.append(EASE(l2=config.ease_lambda, max_items=config.ease_max_items))
        elif name == "als":
            made.append(ALS(factors=config.als_factors, iterations=config.als_iterations,
                            regularization=config.als_regularization, seed=seed))
        elif name == "tail_explore":
            made.append(TailExplore(n_clusters=config.tail_explore_clusters))
        else:
            made.append(SOURCES[name]())
    return made


def fit_sources(sources: Iterable[CandidateSource], history: History, context: SourceContext) -> list:
    fitted = []
    for source in sources:
        fitted.append(source.fit(history, context))
        log.info("fitted source %s", source.name)
    return fitted


def batch_candidates(sources: list[CandidateSource], users: np.ndarray, n: int,
                     exclude_seen: bool = True) -> pd.DataFrame:
    """Long frame (user, item, source, score, rank) of every source's top-n for one batch of user indices."""
    frames = []
    for source in sources:
        items, scores = source.candidates(users, n, exclude_seen=exclude_seen)
        valid = items >= 0
        rows = np.nonzero(valid)
        frames.append(pd.DataFrame({
            "user": users[rows[0]].astype(np.int64), "item": items[valid].astype(np.int64),
            "source": source.name, "score": scores[valid].astype(np.float32),
            "rank": (rows[1] + 1).astype(np.int32)}))
    return pd.concat(frames, ignore_index=True)


MAX_BATCH_CELLS = 1 << 25


def effective_batch_size(batch_size: int, n_items: int) -> int:
    """Users per batch so that a dense (batch, n_items) float32 score matrix stays under 128 MiB."""
    return int(max(1, min(batch_size, MAX_BATCH_CELLS // max(n_items, 1))))


def candidate_union(sources: list[CandidateSource], users: np.ndarray, n: int, batch_size: int = 512,
                    exclude_seen: bool = True) -> pd.DataFrame:
    """Every source's top-n for all `users` (user indices), in batches of at most `batch_size` users (fewer on
    large catalogs: memory is bounded by the batch, never by users x items)."""
    batch_size = effective_batch_size(batch_size, sources[0].history_.n_items) if sources else batch_size
    parts = [batch_candidates(sources, users[i:i + batch_size], n, exclude_seen)
             for i in range(0, len(users), batch_size)]
    return pd.concat(parts, ignore_index=True) if parts else batch_candidates(sources, users[:0], n)


class CandidateBatch:
    """Ray Data callable class: holds the fitted sources (an object-store reference, read zero-copy by every actor
    of the pool), scores user shards."""

    def __init__(self, sources_ref, n: int, exclude_seen: bool):
        import ray

        self.sources, self.n, self.exclude_seen = ray.get(sources_ref), n, exclude_seen

    def __call__(self, batch: dict[str, np.ndarray]) -> pd.DataFrame:
        return batch_candidates(self.sources, np.asarray(batch["user"], dtype=np.int64), self.n, self.exclude_seen)


def candidates_on_ray(sources_ref, n_items: int, users: np.ndarray, n: int, batch_size: int = 512,
                      exclude_seen: bool = True, max_actors: int = 1) -> pd.DataFrame:
    """`candidate_union` on a Ray Data actor pool (1 to `max_actors` actors) over user shards (same output, rows
    in any order). `sources_ref`: `ray.put` of the fitted sources, so the caller can drop its own copy (at 10^6
    items the fitted sources are gigabytes); `n_items`: the catalog size they score."""
    import ray

    batch_size = effective_batch_size(batch_size, n_items)
    rows_per_block = max(batch_size, -(-len(users) // 64))
    frame = pd.DataFrame({"user": np.asarray(users, dtype=np.int64)})
    dataset = ray.data.from_pandas([frame.iloc[i:i + rows_per_block] for i in range(0, len(frame), rows_per_block)]
                                   or [frame])
    out = dataset.map_batches(
        CandidateBatch, fn_constructor_args=(sources_ref, n, exclude_seen), batch_size=batch_size,
        batch_format="numpy", compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max_actors), num_cpus=1)
    frames = list(out.iter_batches(batch_size=None, batch_format="pandas"))
    if frames:
        return pd.concat(frames, ignore_index=True)
    return pd.DataFrame({"user": np.zeros(0, np.int64), "item": np.zeros(0, np.int64), "source": np.zeros(0, str),
                         "score": np.zeros(0, np.float32), "rank": np.zeros(0, np.int32)})


def wide_candidates(long: pd.DataFrame, source_names: list[str], n: int) -> pd.DataFrame:
    """One row per (user, item), sorted: `score_<source>` (NaN if absent) and `rank_<source>` (n + 1 if absent)."""
    users = long["user"].to_numpy(np.int64)
    items = long["item"].to_numpy(np.int64)
    span = int(items.max()) + 1 if len(items) else 1
    keys, codes = np.unique(users * span + items, return_inverse=True)
    out = {"user": keys // span, "item": keys % span}
    source = long["source"].to_numpy()
    score = long["score"].to_numpy(np.float32)
    rank = long["rank"].to_numpy(np.int32)
    for name in source_names:
        mask = source == name
        score_col = np.full(len(keys), np.nan, dtype=np.float32)
        rank_col = np.full(len(keys), n + 1, dtype=np.int32)
        score_col[codes[mask]] = score[mask]
        rank_col[codes[mask]] = rank[mask]
        out[f"score_{name}"], out[f"rank_{name}"] = score_col, rank_col
    return pd.DataFrame(out)


def reciprocal_rank_blend(wide: pd.DataFrame, source_names: list[str], k: float = 60.0) -> np.ndarray:
    """The pre-ranker final score: reciprocal rank fusion, Σ_s 1 / (k + rank_s) over sources that propose
    the item (Cormack et al. 2009) — robust to the sources' incomparable score scales."""
    total = np.zeros(len(wide), dtype=np.float64)
    for name in source_names:
        score = wide[f"score_{name}"].to_numpy()
        rank = wide[f"rank_{name}"].to_numpy(dtype=np.float64)
        total += np.where(np.isnan(score), 0.0, 1.0 / (k + rank))
    return total
