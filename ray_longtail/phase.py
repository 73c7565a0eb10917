"""The protocol's two phases as one object each.

- "fit":  history = train (ts < cut_valid), labels = valid window  -> the ranker learns here, tune scores here.
- "eval": history = train + valid (ts < cut_test), labels = test window -> the reported metrics.

A `Phase` holds the history matrices, popularity segments, user profiles and source context computed on its
own history (never on its label window), and the evaluated users with their ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ray_longtail.artifacts import FEEDBACK, RunStore
from ray_longtail.config import Config
from ray_longtail.data import schema as S
from ray_longtail.discover import segment_items
from ray_longtail.embed import table_to_vectors
from ray_longtail.errors import UserError
from ray_longtail.history import History, SourceContext
from ray_longtail.profile import user_profiles


@dataclass
class Phase:
    name: str
    history: History
    segments: pd.DataFrame  # item_id, popularity, segment (catalog order)
    context: SourceContext
    users: np.ndarray  # evaluated user indices into history.user_ids (history and non-empty truth)
    truth: sp.csr_matrix  # (len(users), n_items) binary ground truth

    @property
    def is_tail(self) -> np.ndarray:
        return (self.segments[S.SEGMENT] != S.HEAD).to_numpy()

    @property
    def is_cold(self) -> np.ndarray:
        return (self.segments[S.SEGMENT] == S.COLD).to_numpy()


def ground_truth(labels: pd.DataFrame, history: History, exclude_seen: bool) -> tuple[np.ndarray, sp.csr_matrix]:
    """Users with history and a non-empty ground truth G_u (distinct label-window items, minus history items
    when `exclude_seen`): (user indices, csr (n_users_eval, n_items))."""
    u = history.user_index(labels[S.USER_ID].to_numpy())
    i = pd.Index(history.item_ids).get_indexer(labels[S.ITEM_ID])
    keep = (u >= 0) & (i >= 0)
    full = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (u[keep], i[keep])),
                         shape=(history.n_users, history.n_items))
    full.data[:] = 1.0
    full.sum_duplicates()
    full.data[:] = 1.0
    if exclude_seen:
        full = full - full.multiply(history.binary)
        full.eliminate_zeros()
    users = np.flatnonzero(full.getnnz(axis=1) > 0)
    return users, full[users].tocsr()


def build_phase(name: str, history_events: pd.DataFrame, label_events: pd.DataFrame, end_ts: int,
                item_ids: np.ndarray, vectors: np.ndarray, clusters: np.ndarray, config: Config) -> Phase:
    """Everything a phase needs, computed from `history_events` only (labels only give the ground truth)."""
    history = History.build(history_events, item_ids, end_ts)
    segments = segment_items(item_ids, history.popularity(), config.discover.head_share)
    profiles = user_profiles(history, vectors, config.profile.half_life_days, config.profile.max_history)
    context = SourceContext(vectors=vectors, clusters=clusters,
                            is_tail=(segments[S.SEGMENT] != S.HEAD).to_numpy(), profiles=profiles)
    users, truth = ground_truth(label_events, history, config.eval.exclude_seen)
    if name == "eval" and config.eval.max_users is not None and len(users) > config.eval.max_users:
        keep = np.sort(np.random.default_rng(config.seed).choice(len(users), config.eval.max_users, replace=False))
        users, truth = users[keep], truth[keep]
    return Phase(name=name, history=history, segments=segments, context=context, users=users, truth=truth)


def fold_names(config: Config, cuts: dict) -> list[str]:
    """The ranker's labelled phases, newest first: "fit" (history = train, labels = the valid window) and up to
    `rank.folds` - 1 earlier folds "fit1", "fit2", ... (labels = the window of the valid window's length before
    the previous fold's, history = everything before it), while a fold keeps at least one window of history."""
    length = cuts["cut_test"] - cuts["cut_valid"]
    names = ["fit"]
    for fold in range(1, config.rank.folds):
        if cuts["cut_valid"] - (fold + 1) * length <= cuts["t_min"]:
            break
        names.append(f"fit{fold}")
    return names


def phase_window(name: str, cuts: dict) -> tuple[int, int]:
    """(history end = label start, label end) of a phase."""
    if name == "eval":
        return cuts["cut_test"], cuts["t_max"] + 1
    if name != "fit" and not (name.startswith("fit") and name[3:].isdigit()):
        raise ValueError(f"phase must be eval, fit or fit<n>, got {name!r}")
    fold = 0 if name == "fit" else int(name[3:])
    length = cuts["cut_test"] - cuts["cut_valid"]
    end = cuts["cut_valid"] - fold * length
    return end, end + length


def read_catalog_ids(store: RunStore) -> np.ndarray:
    """The catalog's item ids in catalog order (read without the text columns)."""
    return store.read_table("catalog.parquet", columns=[S.ITEM_ID])[S.ITEM_ID].to_numpy()


def read_item_vectors(store: RunStore, catalog_ids: np.ndarray) -> np.ndarray:
    """Item embeddings (n_items, dim) aligned to `catalog_ids`."""
    ids, vectors = table_to_vectors(store.read_arrow("item_embeddings.parquet"))
    position = pd.Index(ids).get_indexer(catalog_ids)
    if (position < 0).any():
        raise UserError("item_embeddings.parquet does not cover the catalog; rerun embed with --force")
    in_order = len(position) == len(ids) and bool((position == np.arange(len(ids))).all())
    return vectors if in_order else vectors[position]


def read_item_clusters(store: RunStore, n_items: int) -> np.ndarray:
    """Each catalog item's embedding cluster (all 0 before the discover stage has run)."""
    if not store.exists("item_segments.parquet"):
        return np.zeros(n_items, dtype=np.int64)
    return store.read_table("item_segments.parquet", columns=[S.CLUSTER])[S.CLUSTER].to_numpy()


def load_phase(store: RunStore, name: str, config: Config, catalog_ids: np.ndarray | None = None,
               vectors: np.ndarray | None = None, clusters: np.ndarray | None = None) -> Phase:
    """A phase of a run from its split tables: "eval" (train+valid -> test), "fit" (train -> valid) or an earlier
    fold "fit<n>" (`fold_names`); catalog ids, vectors and clusters are read from the run unless given."""
    cuts = store.read_json("split/cuts.json")
    end, label_end = phase_window(name, cuts)
    read = store.read_table
    if name == "eval":
        parts = [read("split/train.parquet"), read("split/valid.parquet")]
        if store.exists(FEEDBACK):  # a refreshed run: logged events extend the history (and its end)
            parts.append(read(FEEDBACK))
            end = max(end, int(parts[-1][S.TIMESTAMP].max()) + 1)
        history = pd.concat(parts, ignore_index=True)
        labels = read("split/test.parquet")
    elif name == "fit":
        history, labels = read("split/train.parquet"), read("split/valid.parquet")
    else:
        train = read("split/train.parquet")
        ts = train[S.TIMESTAMP]
        history, labels = train[ts < end], train[(ts >= end) & (ts < label_end)]
    catalog_ids = read_catalog_ids(store) if catalog_ids is None else catalog_ids
    vectors = read_item_vectors(store, catalog_ids) if vectors is None else vectors
    clusters = read_item_clusters(store, len(catalog_ids)) if clusters is None else clusters
    return build_phase(name, history, labels, end, catalog_ids, vectors, clusters, config)
