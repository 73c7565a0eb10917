"""The interactions of a phase as matrices (`History`) and what content-aware sources need besides them
(`SourceContext`): item vectors, clusters, tail flags and user profiles, all aligned to the history's items."""

from __future__ import annotations

from dataclasses import dataclass

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

    @classmethod
    def one_user(cls, user_id: str, items: np.ndarray, timestamps: np.ndarray, item_ids: np.ndarray,
                 end_ts: int) -> History:
        """What `build` makes of one user's events given as item indices into `item_ids` and their times (a
        repeated index is a repeat interaction), without a frame: the serving path for an ad-hoc user."""
        items, timestamps = np.asarray(items, dtype=np.int64), np.asarray(timestamps)
        order = np.argsort(items, kind="stable")
        unique, starts, counts = np.unique(items[order], return_index=True, return_counts=True)
        ordered_ts = timestamps[order]
        item_first_ts = np.full(len(item_ids), np.nan)
        if len(unique):
            item_first_ts[unique] = np.minimum.reduceat(ordered_ts, starts)
        last = np.maximum.reduceat(ordered_ts, starts) if len(unique) else np.zeros(0)
        shape, indptr = (1, len(item_ids)), np.array([0, len(unique)])

        def matrix(values: np.ndarray, dtype: type) -> sp.csr_matrix:
            return sp.csr_matrix((values.astype(dtype), unique, indptr), shape=shape)

        return cls(user_ids=np.array([user_id], dtype=object), item_ids=np.asarray(item_ids, dtype=object),
                   binary=matrix(np.ones(len(unique)), np.float32), counts=matrix(counts, np.float32),
                   last_ts=matrix(last, np.float64), item_first_ts=item_first_ts, end_ts=int(end_ts))

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
