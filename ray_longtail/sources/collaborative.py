"""Collaborative sources, each also a baseline: MostPopular, ItemKNN, EASE and ALS (`implicit`).

All follow `CandidateSource`: parameters in `__init__`, learned state in `*_` attributes after `fit`.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.linalg.lapack
import scipy.sparse as sp

from ray_longtail.errors import ConfigError
from ray_longtail.history import History, SourceContext
from ray_longtail.sources.base import CandidateSource, UserBatch, mask_seen, sparse_top_n, top_n

log = logging.getLogger(__name__)


class MostPopular(CandidateSource):
    """Items by distinct users in the history; the same list for everyone."""

    name = "popular"

    def fit(self, history: History, context: SourceContext | None = None) -> MostPopular:
        pop = history.popularity().astype(np.float32)
        self.scores_ = np.log1p(pop)
        self.order_ = np.argsort(-self.scores_, kind="stable")
        return self

    def candidates(self, batch: UserBatch, n: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-n from the global order's first n + (most history items in the batch) entries: enough that n
        unseen items remain for every user."""
        rows = batch.rows
        most_seen = int(np.diff(rows.indptr).max()) if exclude_seen and rows.shape[0] else 0
        head = self.order_[: n + most_seen]
        scores = np.tile(self.scores_[head], (rows.shape[0], 1))
        top, values = top_n(mask_seen(scores, rows[:, head], exclude_seen), n)
        return np.where(top >= 0, head[np.maximum(top, 0)], -1), values

    def score(self, batch: UserBatch) -> np.ndarray:
        return np.tile(self.scores_, (len(batch), 1))


class ItemKNN(CandidateSource):
    """Item-item collaborative filtering: cosine of co-occurrence over history users, top `neighbors` per item.

    score(u, j) = sum over the user's history items i of sim(i, j).
    """

    name = "itemknn"

    def __init__(self, neighbors: int = 100, max_user_items: int = 200):
        self.neighbors = neighbors
        self.max_user_items = max_user_items

    def fit(self, history: History, context: SourceContext | None = None) -> ItemKNN:
        """Co-occurrence over each user's `max_user_items` most recent items: a user with d items adds d²
        pairs, so the cap bounds memory on heavy-tailed activity (wholesalers, bots)."""
        from ray_longtail.profile import recency_weights

        X = recency_weights(history, half_life_days=1e12, max_history=self.max_user_items)
        X.data[:] = 1.0
        X = X.tocsc().astype(np.float32)
        norms = np.sqrt(np.asarray(X.power(2).sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        Xn = X @ sp.diags(1.0 / norms)
        sims = (Xn.T @ Xn).tocsr()
        sims.setdiag(0)
        sims.eliminate_zeros()
        self.similarity_ = keep_top_k_per_row(sims, self.neighbors)
        return self

    def score(self, batch: UserBatch) -> np.ndarray:
        scores = (batch.rows @ self.similarity_).toarray()
        scores[scores == 0] = -np.inf
        return scores

    def candidates(self, batch: UserBatch, n: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-n of the sparse scores (only items that share users with the history have one)."""
        rows = batch.rows
        return sparse_top_n((rows @ self.similarity_).tocsr(), rows if exclude_seen else None, n)


def keep_top_k_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Sparsify a csr matrix to the k largest entries of each row."""
    matrix = matrix.tocsr()
    rows, cols, vals = [], [], []
    for r in range(matrix.shape[0]):
        start, end = matrix.indptr[r], matrix.indptr[r + 1]
        if end == start:
            continue
        row_vals = matrix.data[start:end]
        top = np.argpartition(-row_vals, k - 1)[:k] if end - start > k else np.arange(end - start)
        rows.append(np.full(len(top), r))
        cols.append(matrix.indices[start:end][top])
        vals.append(row_vals[top])
    if not rows:
        return sp.csr_matrix(matrix.shape, dtype=np.float32)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=matrix.shape, dtype=np.float32)


def spd_inverse(gram: np.ndarray, ridge: float, block: int = 2048) -> np.ndarray:
    """(gram + ridge·I)⁻¹ of a symmetric positive semi-definite float64 matrix, in place (no second m x m
    array): Cholesky factor and inverse from LAPACK (n³ flops, half of an LU inverse), then the lower triangle
    filled from the upper one block by block."""
    gram[np.diag_indices_from(gram)] += ridge
    m = gram.shape[0]
    fortran = gram.T  # the same symmetric matrix, Fortran-ordered: LAPACK works on it without a copy
    factor, info = scipy.linalg.lapack.dpotrf(fortran, lower=False, overwrite_a=True, clean=False)
    if info == 0:
        factor, info = scipy.linalg.lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky inverse failed (LAPACK info {info}); increase the ridge")
    for start in range(0, m, block):
        stop = min(start + block, m)
        factor[start:stop, :start] = factor[:start, start:stop].T
        tile = factor[start:stop, start:stop]
        lower = np.tril_indices(stop - start, -1)
        tile[lower] = tile.T[lower]
    return factor.T


class EASE(CandidateSource):
    """EASE (Steck 2019): B = I - P·diagMat(1/diag(P)), P = (XᵀX + λI)⁻¹, zero diagonal; score = X_u · B.

    Needs an items x items dense matrix (8·m² bytes, inverted in place): catalogs above `max_items` are restricted
    to their `max_items` most popular items (the rest get no EASE score; other sources cover them).
    """

    name = "ease"

    def __init__(self, l2: float = 250.0, max_items: int = 30000):
        self.l2 = l2
        self.max_items = max_items

    def fit(self, history: History, context: SourceContext | None = None) -> EASE:
        if not self.l2 > 0:
            raise ConfigError(f"retrieve.ease_lambda must be > 0 (the ridge that makes EASE's inverse exist), "
                              f"got {self.l2}")
        self.n_items_ = history.n_items
        pop = history.popularity()
        active = np.flatnonzero(pop > 0)
        if len(active) > self.max_items:
            log.warning("EASE: %d items with history exceed retrieve.ease_max_items=%d; using the most popular",
                        len(active), self.max_items)
            active = np.sort(active[np.argsort(-pop[active], kind="stable")[: self.max_items]])
        self.items_ = active
        X = history.binary[:, active]
        P = spd_inverse((X.T @ X).toarray().astype(np.float64), self.l2)
        P /= -np.diag(P).copy()
        P[np.diag_indices_from(P)] = 0.0
        self.weights_ = np.ascontiguousarray(P, dtype=np.float32)  # C order: rows @ weights_ never copies it
        return self

    def score(self, batch: UserBatch) -> np.ndarray:
        scores = np.full((len(batch), self.n_items_), -np.inf, dtype=np.float32)
        scores[:, self.items_] = batch.rows[:, self.items_] @ self.weights_
        return scores

    def candidates(self, batch: UserBatch, n: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-n over the `items_` EASE scores (sorted, so ties still go to the lower item index)."""
        rows = batch.rows[:, self.items_]
        scores = np.asarray(rows @ self.weights_, dtype=np.float32)
        top, values = top_n(mask_seen(scores, rows, exclude_seen), n)
        return np.where(top >= 0, self.items_[np.maximum(top, 0)], -1), values


def item_gram(item_factors: np.ndarray) -> np.ndarray:
    """(factors, factors) float64 YᵀY of the item factors: the part of every ALS user step that no user changes
    (~1 ms for 4k items x 64 factors, once per fit instead of once per scored batch)."""
    factors = item_factors.astype(np.float64)
    return factors.T @ factors


class ALS(CandidateSource):
    """Implicit-feedback matrix factorisation (Hu et al. 2008) from the `implicit` library; score = uᵀv.

    Item factors come from `implicit`'s fit; every user's factors, known at fit time or not, are then the exact
    ALS user step against those final item factors (`user_factors`), so a history given at serving time scores
    exactly as the same history seen at fit time.
    """

    name = "als"

    def __init__(self, factors: int = 64, iterations: int = 15, regularization: float = 0.05, alpha: float = 1.0,
                 seed: int = 0):
        self.factors = factors
        self.iterations = iterations
        self.regularization = regularization
        self.alpha = alpha
        self.seed = seed

    def fit(self, history: History, context: SourceContext | None = None) -> ALS:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(factors=self.factors, iterations=self.iterations,
                                            regularization=self.regularization, alpha=self.alpha,
                                            random_state=self.seed, calculate_training_loss=False)
            model.fit(self._confidence(history.counts), show_progress=False)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        self.item_gram_ = item_gram(self.item_factors_)
        self.user_factors_ = self.user_factors(history.counts)
        return self

    def __setstate__(self, state: dict) -> None:
        """Sources pickled before `item_gram_` was learned state get it on load (runs of earlier versions)."""
        self.__dict__.update(state)
        if "item_factors_" in state and "item_gram_" not in state:
            self.item_gram_ = item_gram(self.item_factors_)

    @staticmethod
    def _confidence(counts: sp.csr_matrix) -> sp.csr_matrix:
        confidence = counts.tocsr(copy=True).astype(np.float32)
        confidence.data = np.log1p(confidence.data).astype(np.float32)
        return confidence

    def user_factors(self, counts: sp.csr_matrix) -> np.ndarray:
        """(n_rows, factors) ALS user step for interaction-count rows: x_u = (YᵀC_uY + λI)⁻¹ YᵀC_u p_u with
        C_u = alpha·log1p(count) on the row's items (the confidence `fit` trains on; implicit's formulation)."""
        confidence = self._confidence(counts)
        confidence.data *= self.alpha
        base = self.item_gram_ + self.regularization * np.eye(self.item_gram_.shape[0])
        out = np.zeros((confidence.shape[0], base.shape[0]), dtype=np.float32)
        for row in range(confidence.shape[0]):
            start, end = confidence.indptr[row], confidence.indptr[row + 1]
            if end == start:
                continue
            items, c = confidence.indices[start:end], confidence.data[start:end].astype(np.float64)
            factors = self.item_factors_[items].astype(np.float64)
            out[row] = np.linalg.solve(base + (factors.T * (c - 1.0)) @ factors, factors.T @ c)
        return out

    def score(self, batch: UserBatch) -> np.ndarray:
        """Known users: their factors from fit; rows unseen at fit time: the same user step on their counts."""
        known = batch.users >= 0
        factors = np.empty((len(batch), self.item_factors_.shape[1]), dtype=np.float32)
        factors[known] = self.user_factors_[batch.users[known]]
        if not known.all():
            factors[~known] = self.user_factors(batch.counts[~known])
        return factors @ self.item_factors_.T
