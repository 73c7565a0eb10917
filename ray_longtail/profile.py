"""Profile: user vector = recency-weighted mean of the embeddings of the user's most recent history items.

weight(u, i) = 0.5 ** (age_days / half_life_days), age measured from the history's end to the user's last
interaction with i; only the user's `max_history` most recent distinct items count. Shapes: vectors
(n_items, dim) unit float32 -> profiles (n_users, dim) unit float32 (zero rows for users without items).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from ray_longtail.data import schema as S
from ray_longtail.embed import vectors_to_table
from ray_longtail.history import DAY, History


def recency_weights(history: History, half_life_days: float, max_history: int) -> sp.csr_matrix:
    """csr (n_users, n_items) of recency weights, keeping each user's `max_history` most recent items."""
    last = history.last_ts.tocsr()
    age_days = (history.end_ts - last.data) / DAY
    weights = np.power(0.5, np.maximum(age_days, 0.0) / max(half_life_days, 1e-9)).astype(np.float32)
    matrix = sp.csr_matrix((weights, last.indices.copy(), last.indptr.copy()), shape=last.shape)
    counts = np.diff(matrix.indptr)
    if (counts > max_history).any():
        rows = np.repeat(np.arange(matrix.shape[0]), counts)
        order = np.lexsort((-last.data, rows))
        rank_in_row = np.arange(len(order)) - np.repeat(matrix.indptr[:-1], counts)
        keep = np.zeros(len(order), dtype=bool)
        keep[order[rank_in_row < max_history]] = True
        matrix = sp.csr_matrix((matrix.data * keep, matrix.indices, matrix.indptr), shape=matrix.shape)
        matrix.eliminate_zeros()
    return matrix


def user_profiles(history: History, vectors: np.ndarray, half_life_days: float = 90.0,
                  max_history: int = 100) -> np.ndarray:
    """(n_users, dim) unit float32 user vectors aligned to `history.user_ids`."""
    weights = recency_weights(history, half_life_days, max_history)
    profiles = np.asarray(weights @ vectors, dtype=np.float32)
    norms = np.linalg.norm(profiles, axis=1, keepdims=True)
    profiles /= np.where(norms > 0, norms, 1.0)
    return profiles


def profiles_table(history: History, profiles: np.ndarray) -> pa.Table:
    """(user_id, vector) Arrow table for `user_profiles.parquet` (no per-row Python objects: 10^6 users fit)."""
    return vectors_to_table(history.user_ids, profiles).rename_columns([S.USER_ID, S.VECTOR])
