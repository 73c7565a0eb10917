"""Retrieve: every source's top-n for batches of users, in process (`candidate_union`) or on a Ray Data actor
pool over user shards (`candidates_on_ray`), as one long frame (user, item, source, score, rank).

The content product profiles @ vectors.T is computed once per batch (`UserBatch.content_scores`) when a source
of the batch reads it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ray_longtail.history import History, SourceContext
from ray_longtail.sources.base import CandidateSource, UserBatch, known_users_batch

MAX_BATCH_CELLS = 1 << 25
LONG_COLUMNS = ("user", "item", "source", "score", "rank")


def batch_candidates(sources: list[CandidateSource], batch: UserBatch, n: int, exclude_seen: bool = True,
                     user_labels: np.ndarray | None = None) -> pd.DataFrame:
    """Long frame (user, item, source, score, rank) of every source's top-n for one batch; `user` is
    `user_labels` (default: the batch's `users`) of each row. Built as one frame (`candidate_columns`)."""
    return pd.DataFrame(candidate_columns(sources, batch, n, exclude_seen, user_labels))


def candidate_columns(sources: list[CandidateSource], batch: UserBatch, n: int, exclude_seen: bool = True,
                      user_labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """`batch_candidates` as a dict of column arrays (`source`: object strings): what a one-user serving
    request passes down the chain, where building and reading pandas frames cost more than the scoring."""
    labels = batch.users if user_labels is None else np.asarray(user_labels, dtype=np.int64)
    if not sources:
        return empty_columns()
    parts = []
    for source in sources:
        items, scores = source.candidates(batch, n, exclude_seen=exclude_seen)
        rows, cols = np.nonzero(items >= 0)
        parts.append((rows, items[rows, cols], scores[rows, cols], cols))
    counts = [len(rows) for rows, *_ in parts]
    return {
        "user": labels[np.concatenate([p[0] for p in parts])].astype(np.int64),
        "item": np.concatenate([p[1] for p in parts]).astype(np.int64),
        "source": np.repeat(np.asarray([s.name for s in sources], dtype=object), counts),
        "score": np.concatenate([p[2] for p in parts]).astype(np.float32),
        "rank": (np.concatenate([p[3] for p in parts]) + 1).astype(np.int32)}


def empty_columns() -> dict[str, np.ndarray]:
    return {"user": np.zeros(0, np.int64), "item": np.zeros(0, np.int64), "source": np.zeros(0, dtype=object),
            "score": np.zeros(0, np.float32), "rank": np.zeros(0, np.int32)}


def empty_long() -> pd.DataFrame:
    return pd.DataFrame(empty_columns())


def effective_batch_size(batch_size: int, n_items: int) -> int:
    """Users per batch so that a dense (batch, n_items) float32 score matrix stays under 128 MiB."""
    return int(max(1, min(batch_size, MAX_BATCH_CELLS // max(n_items, 1))))


def user_batches(sources: list[CandidateSource], history: History, context: SourceContext, users: np.ndarray,
                 batch_size: int):
    """Yield the `UserBatch`es of `users` (history row indices), at most `batch_size` users each (fewer on large
    catalogs: memory is bounded by the batch, never by users x items)."""
    size = effective_batch_size(batch_size, history.n_items)
    with_content = any(source.uses_content_scores for source in sources)
    for start in range(0, len(users), size):
        yield known_users_batch(history, context, users[start:start + size], with_content)


def candidate_union(sources: list[CandidateSource], history: History, context: SourceContext, users: np.ndarray,
                    n: int, batch_size: int = 512, exclude_seen: bool = True) -> pd.DataFrame:
    """Every source's top-n for all `users` (history row indices), batch by batch."""
    parts = [batch_candidates(sources, batch, n, exclude_seen)
             for batch in user_batches(sources, history, context, np.asarray(users, dtype=np.int64), batch_size)]
    return pd.concat(parts, ignore_index=True) if parts else empty_long()


class CandidateBatch:
    """Ray Data callable class: holds the fitted sources with their history and context (one object-store
    reference, read zero-copy by every actor of the pool) and scores user shards."""

    def __init__(self, fitted_ref, n: int, exclude_seen: bool, batch_size: int):
        import ray

        self.sources, self.history, self.context = ray.get(fitted_ref)
        self.n, self.exclude_seen, self.batch_size = n, exclude_seen, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> pd.DataFrame:
        users = np.asarray(batch["user"], dtype=np.int64)
        return candidate_union(self.sources, self.history, self.context, users, self.n, self.batch_size,
                               self.exclude_seen)


def candidates_on_ray(fitted_ref, n_items: int, users: np.ndarray, n: int, batch_size: int = 512,
                      exclude_seen: bool = True, max_actors: int = 1) -> pd.DataFrame:
    """`candidate_union` on a Ray Data actor pool (1 to `max_actors` actors) over user shards (same output, rows
    in any order). `fitted_ref`: `ray.put((sources, history, context))`, so the caller can drop its own copy (at
    10^6 items the fitted sources are gigabytes); `n_items`: the catalog size they score."""
    import ray

    batch_size = effective_batch_size(batch_size, n_items)
    rows_per_block = max(batch_size, -(-len(users) // 64))
    frame = pd.DataFrame({"user": np.asarray(users, dtype=np.int64)})
    dataset = ray.data.from_pandas([frame.iloc[i:i + rows_per_block] for i in range(0, len(frame), rows_per_block)]
                                   or [frame])
    out = dataset.map_batches(
        CandidateBatch, fn_constructor_args=(fitted_ref, n, exclude_seen, batch_size), batch_size=batch_size,
        batch_format="numpy", compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max_actors), num_cpus=1)
    frames = list(out.iter_batches(batch_size=None, batch_format="pandas"))
    return pd.concat(frames, ignore_index=True) if frames else empty_long()
