"""Serving lists computed by the batch job: every (recently active) history user's tail_weight-independent ranked
candidates (`scoring.RankedCandidates` of the eval phase, `exclude_seen` as in `eval.exclude_seen`), so that a
served request for a known user only re-ranks at its tail_weight (a millisecond) instead of running sources,
features and the scorer (tens of milliseconds).

Stored as `serving/ranked.parquet` (`artifacts.SERVING_LISTS`): one row per user (user_id; items, scores and
source codes as fixed-size lists of `rerank.depth`; appetite), source names and `exclude_seen` in the schema
metadata. In a replica it costs `depth x (4 + 4 or 8 + 1) + 8` bytes per user: 1.8 KB at depth 200 with float32
scores (the ranker's), 2.6 KB with float64 ones (the blend's), i.e. 180-260 MB per 10^5 users.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from ray_longtail.data import schema as S
from ray_longtail.history import DAY, History
from ray_longtail.scoring import RankedCandidates

_META = b"ray_longtail"


def serving_users(history: History, limit: int, active_days: float | None = None) -> np.ndarray:
    """Indices (ascending) of the `limit` most recently active history users (ties: lower index), only those
    active within `active_days` before the history's end when given: a shop with a years-long log holds many
    users who left long ago, and each precomputed user costs the batch job a few ms (the rest are computed on
    their first request)."""
    last = np.asarray(history.last_ts.max(axis=1).todense()).ravel()
    recent = np.ones(history.n_users, bool) if active_days is None else \
        last >= history.end_ts - active_days * DAY
    if limit >= int(recent.sum()):
        return np.flatnonzero(recent)
    order = np.argsort(-last, kind="stable")
    return np.sort(order[recent[order]][:limit])


def _exact_float32(values: np.ndarray) -> np.ndarray:
    """float32 when that loses nothing (ranker scores are float32), else float64: served lists equal batch lists."""
    narrow = values.astype(np.float32)
    return narrow if np.array_equal(narrow, values) else values


def _fixed(values: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])


def ranked_table(ranked: RankedCandidates, users: np.ndarray, history: History, source_names: list[str],
                 exclude_seen: bool) -> pa.Table:
    """`ranked` (rows for some of `users`) as the serving table with one row per user of `users`: a user without
    candidates gets an empty (padded) row, so serving knows it was computed."""
    depth = ranked.items.shape[1]
    row, found = np.searchsorted(ranked.users, users), np.isin(users, ranked.users)
    items = np.full((len(users), depth), -1, dtype=np.int32)
    scores = np.full((len(users), depth), -np.inf, dtype=np.float64)
    codes = np.full((len(users), depth), -1, dtype=np.int8)
    appetite = np.zeros(len(users), dtype=np.float64)
    items[found], scores[found] = ranked.items[row[found]], ranked.scores[row[found]]
    appetite[found] = ranked.appetite[row[found]]
    codes[found] = pd.Categorical(ranked.sources[row[found]].ravel(), categories=list(source_names)).codes \
        .reshape(-1, depth)
    meta = {"sources": list(source_names), "exclude_seen": bool(exclude_seen)}
    return pa.table({S.USER_ID: pa.array(history.user_ids[users].astype(str)), "items": _fixed(items),
                     "scores": _fixed(_exact_float32(scores)), "sources": _fixed(codes),
                     "appetite": pa.array(appetite)}, metadata={_META: json.dumps(meta).encode()})


@dataclass(frozen=True)
class PrecomputedLists:
    """The serving table in memory, addressed by the phase's user index: `row_of` (n_users,) row or -1."""

    row_of: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    codes: np.ndarray
    appetite: np.ndarray
    source_names: np.ndarray
    exclude_seen: bool

    @classmethod
    def from_table(cls, table: pa.Table, history: History) -> PrecomputedLists:
        meta = json.loads(table.schema.metadata[_META])
        user = history.user_index(table.column(S.USER_ID).to_numpy(zero_copy_only=False))
        keep = user >= 0
        row_of = np.full(history.n_users, -1, dtype=np.int64)
        row_of[user[keep]] = np.flatnonzero(keep)

        def matrix(name: str) -> np.ndarray:
            column = table.column(name).combine_chunks()
            return column.flatten().to_numpy().reshape(len(table), column.type.list_size)

        return cls(row_of=row_of, items=matrix("items"), scores=matrix("scores"), codes=matrix("sources"),
                   appetite=table.column("appetite").to_numpy(), source_names=np.asarray(
                       [*meta["sources"], None], dtype=object), exclude_seen=bool(meta["exclude_seen"]))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def nbytes(self) -> int:
        return self.items.nbytes + self.scores.nbytes + self.codes.nbytes + self.appetite.nbytes

    def population(self, rows: np.ndarray) -> RankedCandidates:
        """The stored lists of table `rows` as one population for counting exposure: `users` are the row numbers
        and `sources` is empty (re-ranking them into named lists needs `get` per user)."""
        return RankedCandidates(users=np.asarray(rows), items=self.items[rows].astype(np.int64),
                                scores=self.scores[rows].astype(np.float64), sources=np.empty((0, 0), object),
                                appetite=self.appetite[rows])

    def get(self, user: int, exclude_seen: bool) -> RankedCandidates | None:
        """The user's ranked candidates, or None when they were not precomputed (for this `exclude_seen`)."""
        row = self.row_of[user]
        if row < 0 or exclude_seen != self.exclude_seen:
            return None
        items = self.items[row: row + 1].astype(np.int64)
        return RankedCandidates(users=np.array([user]), items=items,
                                scores=self.scores[row: row + 1].astype(np.float64),
                                sources=np.where(items >= 0, self.source_names[self.codes[row: row + 1]], None),
                                appetite=self.appetite[row: row + 1])


@dataclass(frozen=True)
class ExposurePaths:
    """The re-ranker's exposure paths (`rerank.py`) of the serving population, one per tail_weight where exposure
    costs something: `weights` (n,), `paths` (n, steps, n_items) float32. Stored as `serving/exposure.npz`
    (`artifacts.EXPOSURE_PATHS`); a replica holds (steps + 1) x n_items x 4 bytes per weight (420 bytes per
    catalog item for the 5 default weights above 0.5 and 20 steps, against 1.5 KB for the item's vector)."""

    weights: np.ndarray
    paths: np.ndarray

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, weights=self.weights, paths=self.paths)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ExposurePaths:
        with np.load(io.BytesIO(data)) as arrays:
            return cls(weights=arrays["weights"], paths=arrays["paths"])

    def for_weight(self, tail_weight: float) -> np.ndarray | None:
        """The path recorded at `tail_weight`, else at the nearest recorded weight (None when there is none)."""
        if not len(self.weights):
            return None
        return self.paths[int(np.argmin(np.abs(self.weights - tail_weight)))]
