"""The items a replica serves: the run's catalog plus items added at serving time (`POST /items`) as one index
space (`ItemIndex`), their durable log in the run (`AddedItemsLog`), and how added items join a user's ranked
candidates (`merge_added`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ray_longtail import scoring
from ray_longtail.artifacts import ADDED, RunStore
from ray_longtail.data import schema as S
from ray_longtail.rerank import ranked_rows
from ray_longtail.sources.base import top_n

if TYPE_CHECKING:
    from ray_longtail.serve.recommender import ServedRun


@dataclass(frozen=True)
class ItemIndex:
    """Catalog items (indices 0..n_catalog-1, the phase's order) followed by items added at serving time (cold
    tail items); an added item that reuses a catalog id updates that item's vector and title in place."""

    ids: np.ndarray
    titles: np.ndarray
    segments: np.ndarray
    vectors: np.ndarray
    n_catalog: int
    position_of: dict[str, int] = field(init=False, repr=False, compare=False)
    is_tail: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "position_of", {str(item): i for i, item in enumerate(self.ids)})
        object.__setattr__(self, "is_tail", self.segments != S.HEAD)

    @classmethod
    def from_run(cls, run: ServedRun) -> ItemIndex:
        titles = run.catalog[S.TITLE].fillna("").astype(str).to_numpy(dtype=object)
        return cls(ids=np.asarray(run.phase.history.item_ids, dtype=object), titles=titles,
                   segments=run.phase.segments[S.SEGMENT].to_numpy(dtype=object), vectors=run.phase.context.vectors,
                   n_catalog=len(titles))

    def with_added(self, added: pd.DataFrame) -> ItemIndex:
        """The catalog part of this index plus `added` (item_id, title, vector)."""
        catalog = pd.Index(self.ids[: self.n_catalog])
        position = catalog.get_indexer(added[S.ITEM_ID])
        vectors, titles = self.vectors[: self.n_catalog].copy(), self.titles[: self.n_catalog].copy()
        updated, new = added[position >= 0], added[position < 0]
        if len(updated):
            vectors[position[position >= 0]] = np.stack(updated["vector"].to_numpy())
            titles[position[position >= 0]] = updated[S.TITLE].to_numpy(dtype=object)
        new_vectors = np.stack(new["vector"].to_numpy()) if len(new) else np.zeros((0, vectors.shape[1]), np.float32)
        return ItemIndex(ids=np.concatenate([self.ids[: self.n_catalog], new[S.ITEM_ID].to_numpy(dtype=object)]),
                         titles=np.concatenate([titles, new[S.TITLE].to_numpy(dtype=object)]),
                         segments=np.concatenate([self.segments[: self.n_catalog],
                                                  np.full(len(new), S.COLD, dtype=object)]),
                         vectors=np.vstack([vectors, new_vectors]).astype(np.float32), n_catalog=self.n_catalog)

    @property
    def n_added(self) -> int:
        return len(self.ids) - self.n_catalog

    def positions(self, item_ids: list[str], catalog_only: bool = False) -> np.ndarray:
        """Index of each known id (unknown ids are skipped; `catalog_only` skips added items too)."""
        limit = self.n_catalog if catalog_only else len(self.ids)
        found = (self.position_of.get(str(i), -1) for i in item_ids)
        return np.asarray([p for p in found if 0 <= p < limit], dtype=np.int64)

    def nearest(self, vector: np.ndarray, k: int, tail_only: bool, exclude: np.ndarray) -> list[dict[str, Any]]:
        """The k items most similar to `vector` (cosine), optionally tail only, without the `exclude` indices."""
        scores = self.vectors @ np.asarray(vector, np.float32)
        if tail_only:
            scores = np.where(self.is_tail, scores, -np.inf)
        scores[exclude] = -np.inf
        items, values = top_n(scores[None, :].astype(np.float32), k)
        return [self.item(int(i), float(v), "content", "text similarity")
                for i, v in zip(items[0], values[0], strict=True) if i >= 0]

    def item(self, item: int, score: float, source: str, reason: str) -> dict[str, Any]:
        return {"item_id": str(self.ids[item]), "title": str(self.titles[item]), "score": score,
                "segment": str(self.segments[item]), "source": source, "reason": reason}


class AddedItemsLog:
    """Items added at serving time, kept durably in the run (`added_items/<ns>.parquet`, one file per request),
    so a restarted or another replica sees them."""

    def __init__(self, store: RunStore):
        self.store = store

    def listing(self) -> frozenset[str]:
        return frozenset(self.store.listing(ADDED, ".parquet"))

    def load(self) -> pd.DataFrame:
        """Every added item (item_id, title, vector), the latest version of each id."""
        frames = [self.store.read_table(f"{ADDED}/{name}") for name in sorted(self.listing())]
        frames = [f.assign(vector=[np.asarray(v, np.float32) for v in f["vector"]]) for f in frames]
        empty = pd.DataFrame({S.ITEM_ID: pd.Series(dtype=str), S.TITLE: pd.Series(dtype=str), "vector": []})
        return pd.concat([empty, *frames], ignore_index=True).drop_duplicates(S.ITEM_ID, keep="last")

    def append(self, frame: pd.DataFrame) -> None:
        self.store.write_table(f"{ADDED}/{time.time_ns()}.parquet", frame)



def merge_added(ranked: scoring.RankedCandidates, items: ItemIndex, min_cosine: float = 0.5,
                ) -> scoring.RankedCandidates:
    """One user's ranked candidates (catalog items) with the items added at serving time that are close (cosine
    >= `min_cosine`) to one of them, each at the score of its most similar candidate: the scorer has seen no item
    without history, and the candidates are what the chain chose for this user. Sorted by score (ties: catalog
    items first), cut to the same depth. Cost: (added items x depth) dot products."""
    valid = ranked.items[0] >= 0
    if not items.n_added or not valid.any():
        return ranked
    candidates, scores = ranked.items[0, valid], ranked.scores[0, valid]
    sims = items.vectors[items.n_catalog:] @ items.vectors[candidates].T
    near = sims.max(axis=1) >= min_cosine
    if not near.any():
        return ranked
    merged = np.concatenate([candidates, items.n_catalog + np.flatnonzero(near)])
    merged_scores = np.concatenate([scores, scores[sims[near].argmax(axis=1)]])
    merged_sources = np.concatenate([ranked.sources[0, valid], np.full(int(near.sum()), "content", dtype=object)])
    _, out_items, out_scores, rows = ranked_rows(np.zeros(len(merged), np.int64), merged, merged_scores,
                                                 ranked.items.shape[1])
    return scoring.RankedCandidates(users=ranked.users, items=out_items, scores=out_scores,
                                    sources=np.where(rows >= 0, merged_sources[np.maximum(rows, 0)], None),
                                    appetite=ranked.appetite)
