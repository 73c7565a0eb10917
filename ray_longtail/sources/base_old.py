"""Shared pieces of every candidate source: the history as sparse user x item matrices, the context of item
vectors / clusters / segments, and the scikit-learn-shaped `CandidateSource` base class with batched top-n.

A source learns in `fit(history, context) -> self` and keeps learned state in attributes ending in `_`;
`score_batch(users)` returns dense scores (len(users), n_items) for a batch of user indices, so memory is
bounded by the batch size, never by users x items.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ray_longtail.data import schema as S

DAY = 86400.0


@dataclass
class History:
    """Interactions before a cut as matrices over (users with history) x (catalog items).

    binary: csr (n_users, n_items) float32 1/0; counts: csr of interaction counts; last_ts: csr of the last
    interaction time (unix s) per pair; item_first_ts: (n_items,) first interaction per item (NaN if none);
    end_ts: the cut (history covers ts < end_ts).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    binary: sp.csr_matrix
    counts: sp.csr_matrix
    last_ts: sp.csr_matrix
    item_first_ts: np.ndarray
    end_ts: int

    @classmethod
    def build(cls, events: pd.DataFrame, item_ids: np.ndarray, end_ts: int) -> History:
        item_index = pd.Index(item_ids)
        user_ids = np.sort(events[S.USER_ID].unique()).astype(object)
        u = pd.Index(user_ids).get_indexer(events[S.USER_ID])
        i = item_index.get_indexer(events[S.ITEM_ID])
        keep = i >= 0
        pairs = pd.DataFrame({"u": u[keep], "i": i[keep], "ts": events[S.TIMESTAMP].to_numpy()[keep]})
        grouped = pairs.groupby(["u", "i"], sort=True).agg(n=("ts", "size"), last=("ts", "max")).reset_index()
        item_first_ts = np.full(len(item_ids), np.nan)
        first = pairs.groupby("i")["ts"].min()
        item_first_ts[first.index.to_numpy()] = first.to_numpy()
        shape = (len(user_ids), len(item_ids))
        rows, cols = grouped["u"].to_numpy(), grouped["i"].to_numpy()

        def matrix(values: np.ndarray, dtype: type) -> sp.csr_matrix:
            return sp.csr_matrix((values.astype(dtype), (rows, cols)), shape=shape)

        return cls(user_ids=user_ids, item_ids=np.asarray(item_ids, dtype=object),
                   binary=matrix(np.ones(len(grouped)), np.float32), counts=matrix(grouped["n"].to_numpy(), np.float32),
                   last_ts=matrix(grouped["last"].to_numpy(), np.float64), item_first_ts=item_first_ts,
                   end_ts=int(end_ts))

    @property
    def n_users(self) -> int:
        return self.binary.shape[0]

    @property
    def n_items(self) -> int:
        return self.binary.shape[1]

    def user_index(self, user_ids: np.ndarray | list[str]) -> np.ndarray:
        """Row index of each user id, -1 for users without history."""
        return pd.Index(self.user_ids).get_indexer(pd.Index(user_ids))

    def popularity(self) -> np.ndarray:
        """Distinct users per item, (n_items,) int64."""
        return np.asarray(self.binary.getnnz(axis=0), dtype=np.int64)


@dataclass
class SourceContext:
    """What content-aware sources need besides the history (all aligned to `History.item_ids`).

    vectors: (n_items, dim) unit float32; clusters: (n_items,) int; is_tail: (n_items,) bool;
    profiles: (n_users, dim) unit float32 user vectors aligned to `History.user_ids`.
    """

    vectors: np.ndarray
    clusters: np.ndarray
    is_tail: np.ndarray
    profiles: np.ndarray
    _last_batch: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def profile_scores(self, users: np.ndarray) -> np.ndarray:
        """profiles[users] @ vectors.T, (len(users), n_items) float32, kept for the last batch: ContentKNN and
        TailExplore score the same batch, and this product is the costliest step of retrieval. Read-only."""
        key = np.asarray(users, dtype=np.int64).tobytes()
        last = self._last_batch
        if last is not None and last[0] == key:
            return last[1]
        scores = self.profiles[users] @ self.vectors.T
        scores.flags.writeable = False
        self._last_batch = (key, scores)
        return scores

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_last_batch"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _last_batch=None)


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-n of a dense (b, m) score matrix: (items (b, n) int64 padded with -1, scores float32).

    Entries equal to -inf are never returned; ties are broken by the lower item index, also at the n-th place.
    Selection runs on `torch.topk` (about 8x faster than `np.argpartition` on 10^6-item rows).
    """
    import torch

    b, m = scores.shape
    n_eff = min(n, m)
    if n_eff == 0 or b == 0:
        return np.full((b, n), -1, dtype=np.int64), np.full((b, n), -np.inf, dtype=np.float32)
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    k = min(n_eff + 1, m)
    values, part = (t.numpy() for t in torch.topk(torch.from_numpy(scores), k, dim=1, sorted=True))
    if k > n_eff:
        threshold = values[:, n_eff - 1]
        boundary_ties = np.flatnonzero((values[:, n_eff] == threshold) & np.isfinite(threshold))
        part, values = part[:, :n_eff].copy(), values[:, :n_eff].copy()
        for r in boundary_ties:  # which of the items tied at the n-th score topk keeps is arbitrary
            tied = np.flatnonzero(scores[r] >= threshold[r])
            part[r] = tied[np.lexsort((tied, -scores[r, tied]))[:n_eff]]
            values[r] = scores[r, part[r]]
    order = np.lexsort((part, -values), axis=1)
    items = np.take_along_axis(part, order, axis=1).astype(np.int64)
    values = np.take_along_axis(values, order, axis=1)
    items = np.where(np.isfinite(values), items, -1)
    if n_eff < n:
        items = np.pad(items, ((0, 0), (0, n - n_eff)), constant_values=-1)
        values = np.pad(values, ((0, 0), (0, n - n_eff)), constant_values=-np.inf)
    return items, values


class CandidateSource(ABC):
    """Base class: subclasses set `name`, implement `fit` (storing `history_` and `context_`) and `score_rows`.

    `score_rows` scores arbitrary history rows (known users, or an ad-hoc list of recent items at serving
    time); `score_batch` scores known users by index. Sources whose scores are sparse or cover few items
    override `candidates` with a path that never builds the dense (b, n_items) matrix; it must return exactly
    what the dense path returns (a shared test checks every source).
    """

    name = "source"
    history_: History
    context_: SourceContext | None = None

    @abstractmethod
    def fit(self, history: History, context: SourceContext) -> CandidateSource:
        """Learn from the history; return self."""

    @abstractmethod
    def score_rows(self, rows: sp.csr_matrix, profiles: np.ndarray | None) -> np.ndarray:
        """Dense float32 scores (n_rows, n_items) for binary history rows (csr (n_rows, n_items)) and their
        profile vectors ((n_rows, dim) or None); -inf marks items the source does not propose."""

    def score_batch(self, users: np.ndarray) -> np.ndarray:
        profiles = self.context_.profiles[users] if self.context_ is not None else None
        return self.score_rows(self.history_.binary[users], profiles)

    def candidates(self, users: np.ndarray, n: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-n items and scores for user indices `users`: ((b, n) int64 padded -1, (b, n) float32)."""
        scores = np.asarray(self.score_batch(users), dtype=np.float32)
        return top_n(mask_seen(scores, self.history_.binary[users], exclude_seen), n)


def sparse_top_n(scores: sp.csr_matrix, seen: sp.csr_matrix | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`top_n` of a sparse (b, m) score matrix whose absent entries mean "not proposed", without densifying:
    the same items and order as `top_n` of the dense matrix with absent and zero entries at -inf and the `seen`
    pairs (csr (b, m), or None) removed."""
    coo = scores.tocoo()
    rows, cols, values = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data.astype(np.float32)
    keep = values != 0
    if seen is not None and seen.nnz:
        seen_rows, seen_cols = seen.nonzero()
        keep &= ~np.isin(rows * scores.shape[1] + cols, seen_rows.astype(np.int64) * scores.shape[1] + seen_cols)
    rows, cols, values = rows[keep], cols[keep], values[keep]
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
    keep = rank < n
    items = np.full((scores.shape[0], n), -1, dtype=np.int64)
    out = np.full((scores.shape[0], n), -np.inf, dtype=np.float32)
    items[rows[keep], rank[keep]] = cols[keep]
    out[rows[keep], rank[keep]] = values[keep]
    return items, out


def mask_seen(scores: np.ndarray, rows: sp.csr_matrix, exclude_seen: bool) -> np.ndarray:
    """Set the scores of the rows' history items to -inf (when `exclude_seen`)."""
    if exclude_seen:
        scores[rows.nonzero()] = -np.inf
    return scores
