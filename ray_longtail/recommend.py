"""Online recommendations from one finished run, with the batch pipeline's own code path:
sources (fitted on the eval history, `sources/eval.pkl`) -> FeatureBuilder -> XGBoost ranker -> rerank.

`Recommender` is plain Python (the Serve deployment wraps it): known users, ad-hoc users given by a list of
recent items, cold-start users (popularity + diversity), similar items, semantic search over item vectors, and
items added at run time (embedded by the caller, appended durably to the run under `added_items/`).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ray_longtail.artifacts import RunStore
from ray_longtail.candidates import mask_seen, top_n
from ray_longtail.config import load_config
from ray_longtail.data import schema as S
from ray_longtail.errors import UserError
from ray_longtail.pipeline import RunContext
from ray_longtail.rerank import candidate_matrix, rerank, tail_appetite
from ray_longtail.retrieve import batch_candidates
from ray_longtail.stages import SOURCES_ARTIFACT, feature_builder, scored_candidates, union_wide

log = logging.getLogger(__name__)
ADDED = "added_items"


def open_run_store(run: str) -> RunStore:
    """A run folder path or URI (an s3:// URI may carry ?query options) -> its RunStore."""
    base, sep, query = run.partition("?")
    base = base.rstrip("/")
    artifacts, run_id = base.rsplit("/", 1) if "/" in base else (".", base)
    store = RunStore(artifacts + sep + query, run_id)
    if not store.exists("manifest.json"):
        raise UserError(f"{run} is not a ray_longtail run folder (no manifest.json)")
    return store


class Recommender:
    """Answers requests for one run. The tail_weight-independent part of a known user's list (candidates scored by
    the ranker, tail appetite, best source per candidate) is cached (LRU) so that a request only pays for the
    re-ranking at its own tail_weight."""

    def __init__(self, run: str, cache_users: int = 50_000):
        self.store = open_run_store(run)
        manifest = self.store.manifest()
        self.config = load_config(extra=manifest["config"])
        self.ctx = RunContext(self.config, self.store)
        for needed in ("metrics.json", SOURCES_ARTIFACT, "item_segments.parquet"):
            if not self.store.exists(needed):
                raise UserError(f"run {run} is incomplete ({needed} missing): finish it with `ray-longtail run`")
        self.phase = self.ctx.phase("eval")
        self.sources = self.store.read_pickle(SOURCES_ARTIFACT)
        self.builder = feature_builder(self.ctx, "eval")
        self.catalog = self.ctx.table("catalog.parquet")
        self.item_ids = np.asarray(self.phase.history.item_ids, dtype=object)
        self.item_index = pd.Index(self.item_ids)
        self.titles = self.catalog[S.TITLE].fillna("").astype(str).to_numpy(dtype=object)
        self.segments = self.phase.segments[S.SEGMENT].to_numpy(dtype=object)
        self.vectors = self.phase.context.vectors
        self.default_tail_weight = float(self.store.read_json("metrics.json")["info"]["tail_weight"])
        self.n = max(self.config.retrieve.n_per_source, max(self.config.eval.ks))
        self.user_positions = pd.Index(self.phase.history.user_ids)
        self.is_tail = self.phase.is_tail
        self.cache: OrderedDict[tuple[int, bool], tuple] = OrderedDict()
        self.cache_users = cache_users
        self.added = self._load_added()
        self._refresh_added()

    def _refresh_added(self) -> None:
        """Catalog + added items as one index space (added items at n_items, ...); clears the user cache."""
        new = self._new_added()
        new_vectors = np.stack(new["vector"].to_numpy()) if len(new) else np.zeros((0, self.vectors.shape[1]))
        self.ext_builder = self.builder.with_new_items(new_vectors)
        self.ext_vectors = self.ext_builder.vectors_
        self.ext_is_tail = np.concatenate([self.is_tail, np.ones(len(new), dtype=bool)])
        self.ext_ids, self.ext_titles, self.ext_segments = self.all_ids(), self.all_titles(), self.all_segments()
        self.cache.clear()

    # ----------------------------------------------------------------------------------------------- users
    def recommend(self, user_id: str | None = None, k: int = 10, exclude_seen: bool = True,
                  tail_weight: float | None = None, recent_items: list[str] | None = None) -> dict[str, Any]:
        weight = self.default_tail_weight if tail_weight is None else float(tail_weight)
        user = int(self.user_positions.get_indexer([user_id])[0]) if user_id is not None else -1
        if user >= 0:
            history_items = self.phase.history.binary[user].indices
        elif recent_items:
            history_items = self._item_positions(recent_items, strict=False)
            if not len(history_items):
                return self._cold_start(k, weight, user_id)
            scored = self._scored_adhoc(history_items, exclude_seen)
        else:
            return self._cold_start(k, weight, user_id)
        lists = self._rerank_known(user, exclude_seen, weight, k) if user >= 0 else self._rerank_adhoc(
            scored, history_items, weight, k)
        items = [self._item(int(i), float(s), str(src), history_items) for i, s, src in
                 zip(lists["item"], lists["score"], lists["source"], strict=True)]
        return {"user_id": user_id, "cold_start": False, "tail_weight": weight, "items": items}

    def _rerank_known(self, user: int, exclude_seen: bool, weight: float, k: int) -> pd.DataFrame:
        """`stages.ranked_lists` for one known user, with its tail_weight-independent part cached."""
        key = (user, exclude_seen)
        if key in self.cache:
            self.cache.move_to_end(key)
        else:
            long = batch_candidates(self.sources, np.array([user]), self.n, exclude_seen)
            long = pd.concat([long, self._added_candidates(user, long)], ignore_index=True)
            features = self.ext_builder.transform(union_wide(self.config, long))
            scored = self._borrow_scores(scored_candidates(self.ctx, features, on_ray=False))
            users, items, scores = candidate_matrix(scored, self.config.rerank.depth)
            appetite = tail_appetite(self.phase.history.binary, self.is_tail, users)
            self.cache[key] = (users, items, scores, appetite, dict(zip(scored["item"], scored["source"], strict=True)))
            if len(self.cache) > self.cache_users:
                self.cache.popitem(last=False)
        users, items, scores, appetite, sources = self.cache[key]
        lists = rerank(users, items, scores, k, weight, self.config.rerank.method, is_tail=self.ext_is_tail,
                       appetite=appetite, vectors=self.ext_vectors)
        return lists.assign(source=[sources[item] for item in lists["item"]])

    def _borrow_scores(self, scored: pd.DataFrame, min_cosine: float = 0.5) -> pd.DataFrame:
        """Cold-start scoring of items added at run time: the ranker has seen no item without history, so an
        added item takes the ranker score of its most similar catalog candidate (if cosine >= min_cosine)."""
        new = scored["item"].to_numpy() >= len(self.item_ids)
        if not new.any() or new.all():
            return scored
        old_items, new_items = scored["item"].to_numpy()[~new], scored["item"].to_numpy()[new]
        sims = self.ext_vectors[new_items] @ self.ext_vectors[old_items].T
        nearest = sims.argmax(axis=1)
        borrowed = scored["score"].to_numpy()[~new][nearest]
        scores = scored["score"].to_numpy().copy()
        scores[new] = np.where(sims.max(axis=1) >= min_cosine, borrowed, scores[new])
        return scored.assign(score=scores)

    def _added_candidates(self, user: int, long: pd.DataFrame, min_cosine: float = 0.5) -> pd.DataFrame:
        """Items added at run time as content candidates of a known user: those within the content source's
        top n by cosine to the profile, or close (cosine >= min_cosine) to one of the user's catalog candidates."""
        n_new = len(self.ext_ids) - len(self.item_ids)
        if not n_new or "content" not in self.config.retrieve.sources:
            return long.iloc[:0]
        scores = self.ext_vectors[len(self.item_ids):] @ self.phase.context.profiles[user]
        content = np.sort(long.loc[long["source"] == "content", "score"].to_numpy())[::-1]
        order = np.argsort(-scores, kind="stable")
        ranks = np.empty(n_new, dtype=np.int64)
        ranks[order] = np.arange(n_new) + 1 + np.searchsorted(-content, -scores[order], side="right")
        near = np.zeros(n_new, dtype=bool)
        if len(long):
            catalog_candidates = self.vectors[np.unique(long["item"].to_numpy())]
            near = (self.ext_vectors[len(self.item_ids):] @ catalog_candidates.T).max(axis=1) >= min_cosine
        keep = (ranks <= self.config.retrieve.n_per_source) | near
        ranks = np.minimum(ranks, self.config.retrieve.n_per_source)
        return pd.DataFrame({"user": user, "item": len(self.item_ids) + np.flatnonzero(keep), "source": "content",
                             "score": scores[keep].astype(np.float32), "rank": ranks[keep].astype(np.int32)})

    def _scored_adhoc(self, history_items: np.ndarray, exclude_seen: bool) -> pd.DataFrame:
        """Candidates for a user known only by recent items: sources score the ad-hoc history row."""
        row = sp.csr_matrix((np.ones(len(history_items), np.float32), (np.zeros(len(history_items), int),
                                                                       history_items)),
                            shape=(1, len(self.item_ids)))
        profile = user_profiles_for_items(self.vectors, history_items)
        frames = []
        for source in self.sources:
            scores = mask_seen(np.asarray(source.score_rows(row, profile), np.float32), row, exclude_seen)
            items, values = top_n(scores, self.n)
            keep = items[0] >= 0
            frames.append(pd.DataFrame({"user": 0, "item": items[0][keep], "source": source.name,
                                        "score": values[0][keep], "rank": np.arange(1, keep.sum() + 1)}))
        wide = union_wide(self.config, pd.concat(frames, ignore_index=True))
        sources = self.config.retrieve.sources
        best = np.asarray(sources)[np.argmin(wide[[f"rank_{s}" for s in sources]].to_numpy(), axis=1)]
        from ray_longtail.retrieve import reciprocal_rank_blend

        return pd.DataFrame({"user": 0, "item": wide["item"], "score": reciprocal_rank_blend(wide, sources),
                             "source": best})

    def _rerank_adhoc(self, scored: pd.DataFrame, history_items: np.ndarray, weight: float, k: int):
        users, items, values = candidate_matrix(scored, self.config.rerank.depth)
        tail = self.phase.is_tail
        appetite = np.array([(tail[history_items].sum() + 0.5) / (len(history_items) + 1.0)])
        lists = rerank(users, items, values, k, weight, self.config.rerank.method, is_tail=tail,
                       appetite=appetite, vectors=self.vectors)
        source = scored.set_index("item")["source"]
        return lists.assign(source=source.reindex(lists["item"]).to_numpy())

    def _cold_start(self, k: int, weight: float, user_id: str | None = None) -> dict[str, Any]:
        """Unknown user: the most popular items, diversified over embeddings (MMR, λ = max(tail_weight, 0.3))."""
        pop = self.phase.history.popularity()
        top = np.argsort(-pop, kind="stable")[: max(self.config.rerank.depth, k)]
        frame = pd.DataFrame({"user": 0, "item": top, "score": np.log1p(pop[top]).astype(np.float32)})
        users, items, values = candidate_matrix(frame, self.config.rerank.depth)
        lists = rerank(users, items, values, k, max(weight, 0.3), "mmr", vectors=self.vectors)
        picked = [self._item(int(i), float(s), "popular", np.array([], dtype=int))
                  for i, s in zip(lists["item"], lists["score"], strict=True)]
        return {"user_id": user_id, "cold_start": True, "tail_weight": weight, "items": picked}

    # ----------------------------------------------------------------------------------------------- items
    def similar(self, item_id: str | None = None, vector: np.ndarray | None = None, k: int = 10,
                tail_only: bool = False) -> dict[str, Any]:
        if item_id is not None:
            vector = self.all_vectors()[self._item_positions([item_id], strict=True)[0]]
        exclude = {item_id} if item_id is not None else set()
        return {"items": self._nearest(np.asarray(vector, np.float32), k, tail_only, exclude)}

    def search(self, vector: np.ndarray, k: int = 10, tail_only: bool = False) -> dict[str, Any]:
        return {"items": self._nearest(np.asarray(vector, np.float32), k, tail_only, set())}

    def _nearest(self, vector: np.ndarray, k: int, tail_only: bool, exclude: set[str]) -> list[dict[str, Any]]:
        vectors, ids, segments = self.all_vectors(), self.all_ids(), self.all_segments()
        scores = vectors @ vector
        if tail_only:
            scores = np.where(segments != S.HEAD, scores, -np.inf)
        if exclude:
            scores = np.where(np.isin(ids, list(exclude)), -np.inf, scores)
        items, values = top_n(scores[None, :].astype(np.float32), k)
        return [{"item_id": str(ids[i]), "title": str(self.all_titles()[i]), "score": float(v),
                 "segment": str(segments[i]), "source": "content", "reason": "text similarity"}
                for i, v in zip(items[0], values[0], strict=True) if i >= 0]

    def add_items(self, items: pd.DataFrame, vectors: np.ndarray) -> dict[str, Any]:
        """Add or update items (embedded by the caller): searchable and recommendable as cold items at once,
        and appended durably to the run (`added_items/<ts>.parquet`) so a restart keeps them."""
        frame = items[[S.ITEM_ID, S.TITLE]].astype(str).assign(vector=list(np.asarray(vectors, np.float32)))
        self.store.write_table(f"{ADDED}/{time.time_ns()}.parquet", frame)
        self.added = pd.concat([self.added, frame], ignore_index=True).drop_duplicates(S.ITEM_ID, keep="last")
        self._refresh_added()
        return {"added": int(len(frame)), "total_added": int(len(self.added))}

    def reload_added(self) -> None:
        """Re-read `added_items/` (items another replica added) and refresh the index space."""
        self.added = self._load_added()
        self._refresh_added()

    def _load_added(self) -> pd.DataFrame:
        empty = pd.DataFrame({S.ITEM_ID: pd.Series(dtype=str), S.TITLE: pd.Series(dtype=str), "vector": []})
        base = self.store.path(ADDED)
        from pyarrow import fs as pafs

        infos = self.store.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        names = sorted(i.path for i in infos if i.path.endswith(".parquet"))
        frames = [self.store.read_table(f"{ADDED}/{n.rsplit('/', 1)[1]}") for n in names]
        frames = [f.assign(vector=[np.asarray(v, np.float32) for v in f["vector"]]) for f in frames]
        return pd.concat([empty, *frames], ignore_index=True).drop_duplicates(S.ITEM_ID, keep="last")

    def all_vectors(self) -> np.ndarray:
        if not len(self.added):
            return self.vectors
        added = self.added[~self.added[S.ITEM_ID].isin(self.item_index)]
        vectors = self.vectors.copy()
        updated = self.added[self.added[S.ITEM_ID].isin(self.item_index)]
        if len(updated):
            vectors[self.item_index.get_indexer(updated[S.ITEM_ID])] = np.stack(updated["vector"].to_numpy())
        if not len(added):
            return vectors
        return np.vstack([vectors, np.stack(added["vector"].to_numpy())])

    def _new_added(self) -> pd.DataFrame:
        return self.added[~self.added[S.ITEM_ID].isin(self.item_index)]

    def all_ids(self) -> np.ndarray:
        return np.concatenate([self.item_ids, self._new_added()[S.ITEM_ID].to_numpy(dtype=object)])

    def all_titles(self) -> np.ndarray:
        return np.concatenate([self.titles, self._new_added()[S.TITLE].to_numpy(dtype=object)])

    def all_segments(self) -> np.ndarray:
        return np.concatenate([self.segments, np.full(len(self._new_added()), S.COLD, dtype=object)])

    def _item_positions(self, item_ids: list[str], strict: bool) -> np.ndarray:
        ids = pd.Index(self.all_ids())
        positions = ids.get_indexer(pd.Index([str(i) for i in item_ids]))
        if strict and (positions < 0).any():
            missing = [i for i, p in zip(item_ids, positions, strict=True) if p < 0]
            raise KeyError(f"unknown item_id {missing[0]!r}")
        positions = positions[positions >= 0]
        return positions[positions < len(self.item_ids)] if not strict else positions

    def _item(self, item: int, score: float, source: str, history_items: np.ndarray) -> dict[str, Any]:
        reason = source
        if len(history_items):
            closest = history_items[int(np.argmax(self.vectors[history_items] @ self.ext_vectors[item]))]
            verb = "bought together with" if source in ("itemknn", "ease", "als") else "similar to"
            reason = f"{source}: {verb} '{self.titles[closest]}'"
        return {"item_id": str(self.ext_ids[item]), "title": str(self.ext_titles[item]), "score": score,
                "segment": str(self.ext_segments[item]), "source": source, "reason": reason}

    def metadata(self) -> dict[str, Any]:
        counts = pd.Series(self.segments).value_counts().to_dict()
        return {"run_id": self.store.run_id, "model": self.config.embed.model, "catalog": int(len(self.item_ids)),
                "added_items": int(len(self._new_added())), "segments": {k: int(v) for k, v in counts.items()},
                "users": int(self.phase.history.n_users), "default_tail_weight": self.default_tail_weight,
                "ranker": "xgboost" if self.config.rank.enabled else "blend"}


def user_profiles_for_items(vectors: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(1, dim) unit profile of an ad-hoc history (equal weights)."""
    profile = vectors[items].mean(axis=0, keepdims=True)
    norm = np.linalg.norm(profile)
    return (profile / norm if norm > 0 else profile).astype(np.float32)
