"""What every candidate source shares: the `UserBatch` it scores, the scikit-learn-shaped `CandidateSource`
base class, and exact batched top-n selection.

A source learns in `fit(history, context) -> self` and keeps learned state in attributes ending in `_`;
`score(batch)` returns dense scores (len(batch), n_items) for a batch of history rows, so memory is bounded by
the batch size, never by users x items. A batch holds rows of users known at fit time or rows built at
serving time from an ad-hoc list of recent items; the sources treat both the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ray_longtail.history import History, SourceContext


@dataclass(frozen=True)
class UserBatch:
    """History rows to score: `users` (b,) row indices into the fitted history (-1: a row the sources did not
    see at fit time), `rows` csr (b, n_items) binary history, `counts` csr (b, n_items) interaction counts,
    `profiles` (b, dim) unit user vectors, and
    `content_scores` = profiles @ vectors.T (b, n_items) float32, computed once per batch when a source of the
    batch needs it (the costliest product of retrieval: ContentKNN and TailExplore share it). Read-only."""

    users: np.ndarray
    rows: sp.csr_matrix
    counts: sp.csr_matrix
    profiles: np.ndarray
    content_scores: np.ndarray | None = None

    def __len__(self) -> int:
        return self.rows.shape[0]


def make_batch(history: History, rows: np.ndarray, profiles: np.ndarray, vectors: np.ndarray,
               users: np.ndarray | None = None, with_content: bool = True) -> UserBatch:
    """A `UserBatch` of `history`'s rows `rows` with their profiles; `users` (their indices in the history the
    sources were fitted on) defaults to -1: rows of a history the sources never saw (serving-time users)."""
    rows = np.asarray(rows, dtype=np.int64)
    users = np.full(len(rows), -1, dtype=np.int64) if users is None else np.asarray(users, dtype=np.int64)
    content = None
    if with_content:
        content = np.asarray(profiles @ vectors.T, dtype=np.float32)
        content.flags.writeable = False
    every_row = len(rows) == history.binary.shape[0] and bool((rows == np.arange(len(rows))).all())
    binary, counts = (history.binary, history.counts) if every_row else (history.binary[rows], history.counts[rows])
    return UserBatch(users=users, rows=binary, counts=counts, profiles=profiles, content_scores=content)


def known_users_batch(history: History, context: SourceContext, users: np.ndarray,
                      with_content: bool = True) -> UserBatch:
    """The batch of history users `users` (row indices of `history`)."""
    return make_batch(history, users, context.profiles[users], context.vectors, users, with_content)


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
    """Base class: subclasses set `name`, implement `fit` (returning self) and `score`.

    Sources whose scores are sparse or cover few items override `candidates` with a path that never builds the
    dense (b, n_items) matrix; it must return exactly what the dense path returns (a shared test checks every
    registered source). `uses_content_scores`: the source reads `UserBatch.content_scores`.
    """

    name = "source"
    uses_content_scores = False

    @abstractmethod
    def fit(self, history: History, context: SourceContext) -> CandidateSource:
        """Learn from the history; return self."""

    @abstractmethod
    def score(self, batch: UserBatch) -> np.ndarray:
        """Dense float32 scores (len(batch), n_items); -inf marks items the source does not propose."""

    def candidates(self, batch: UserBatch, n: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-n items and scores of the batch's rows: ((b, n) int64 padded -1, (b, n) float32)."""
        scores = np.asarray(self.score(batch), dtype=np.float32)
        return top_n(mask_seen(scores, batch.rows, exclude_seen), n)


def sparse_top_n(scores: sp.csr_matrix, seen: sp.csr_matrix | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`top_n` of a sparse (b, m) score matrix whose absent entries mean "not proposed", without densifying:
    the same items and order as `top_n` of the dense matrix with absent and zero entries at -inf and the `seen`
    pairs (csr (b, m), or None) removed."""
    coo = scores.tocoo()
    rows, cols, values = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data.astype(np.float32)
    keep = values != 0
    if seen is not None and seen.nnz:
        seen_rows, seen_cols = csr_nonzero(seen)
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
        scores[csr_nonzero(rows)] = -np.inf
    return scores


def csr_nonzero(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """`matrix.nonzero()` of a csr matrix read from its index arrays (scipy's goes through a COO copy: most of
    the cost of masking one serving user's history)."""
    matrix = matrix if matrix.format == "csr" else matrix.tocsr()
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    nonzero = matrix.data != 0
    return rows[nonzero], matrix.indices[nonzero]
