"""Content sources over the pretrained item embeddings: ContentKNN (cosine of item vectors to the user's profile)
and TailExplore (tail and cold items nearest to the profile inside the user's strongest embedding clusters)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ray_longtail.history import History, SourceContext
from ray_longtail.sources.base import CandidateSource, UserBatch


def content_scores(batch: UserBatch, vectors: np.ndarray) -> np.ndarray:
    """profiles @ vectors.T of the batch: its shared product when it carries one, else computed here."""
    if batch.content_scores is not None:
        return batch.content_scores
    return np.asarray(batch.profiles @ vectors.T, dtype=np.float32)


class ContentKNN(CandidateSource):
    """Cosine of item embeddings to the user's profile vector."""

    name = "content"
    uses_content_scores = True

    def fit(self, history: History, context: SourceContext) -> ContentKNN:
        self.vectors_ = context.vectors
        return self

    def score(self, batch: UserBatch) -> np.ndarray:
        return np.array(content_scores(batch, self.vectors_), dtype=np.float32)  # a copy: callers mask it


class TailExplore(CandidateSource):
    """Tail and cold items nearest to the user's profile, within the user's `n_clusters` strongest clusters
    (cluster strength = the user's history items per cluster)."""

    name = "tail_explore"
    uses_content_scores = True

    def __init__(self, n_clusters: int = 3):
        self.n_clusters = n_clusters

    def fit(self, history: History, context: SourceContext) -> TailExplore:
        self.vectors_ = context.vectors
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

    def score(self, batch: UserBatch) -> np.ndarray:
        return np.where(self.allowed_items(batch.rows), content_scores(batch, self.vectors_), -np.inf)
