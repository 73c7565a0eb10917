"""Online recommendations from one finished run, through the batch pipeline's own scoring chain
(`scoring.py`): sources fitted on the eval history -> FeatureBuilder -> scorer -> re-rank.

Plain Python (the Serve deployment wraps `Recommender`; the `recommend` CLI uses it without Serve), in parts
with one job each: `ServedRun` (what a run serves, loaded once), `UserLists` (the chain for known users and for
ad-hoc users given by recent items), and the `Recommender` facade that answers requests; the items served
(catalog + items added at serving time) are `items.py`'s.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ray_longtail import scoring
from ray_longtail.artifacts import EXPOSURE_PATHS, SERVING_LISTS, SOURCES_ARTIFACT, RunStore, open_run_store
from ray_longtail.config import RERANK_METHODS, Config, load_config
from ray_longtail.data import schema as S
from ray_longtail.enrich import feature_catalog
from ray_longtail.errors import UserError
from ray_longtail.history import History
from ray_longtail.phase import Phase, load_phase
from ray_longtail.precompute import ExposurePaths, PrecomputedLists
from ray_longtail.profile import user_profiles
from ray_longtail.rank import load_ranker
from ray_longtail.rerank import global_tail_share, tail_appetite
from ray_longtail.retrieve import candidate_columns
from ray_longtail.serve.items import AddedItemsLog, ItemIndex, merge_added
from ray_longtail.sources.base import make_batch

log = logging.getLogger(__name__)
COLLABORATIVE = ("itemknn", "ease", "als")


def serving_config(store: RunStore, overrides: list[str] | None = None) -> Config:
    """The run's config with `serve.<key>=<value>` `overrides` (the server's own settings; the rest made the
    run's artifacts and cannot change here)."""
    wrong = [o for o in overrides or [] if not o.startswith("serve.")]
    if wrong:
        raise UserError(f"only serve.* settings can change at serving time (the rest made the run); got {wrong}")
    return load_config(extra=store.manifest()["config"], overrides=overrides)


@dataclass
class ServedRun:
    """A finished run as serving needs it: config, eval phase, fitted sources, feature builder and scorer."""

    store: RunStore
    config: Config
    phase: Phase
    sources: list
    builder: Any
    scorer: Any
    catalog: pd.DataFrame
    default_tail_weight: float
    precomputed: PrecomputedLists | None
    exposure: ExposurePaths | None

    @classmethod
    def load(cls, run: str, overrides: list[str] | None = None) -> ServedRun:
        """`overrides`: `serve.<key>=<value>` settings of the server over the run's own config."""
        store = open_run_store(run)
        for needed in ("metrics.json", SOURCES_ARTIFACT, "item_segments.parquet"):
            if not store.exists(needed):
                raise UserError(f"run {run} is incomplete ({needed} missing): finish it with `ray-longtail run`")
        config = serving_config(store, overrides)
        phase = load_phase(store, "eval", config)
        catalog = store.read_table("catalog.parquet")
        info = store.read_json("metrics.json")["info"]
        name = info.get("scorer", "ranker" if config.rank.enabled else "blend")
        if name == "ranker":
            booster, features = load_ranker(store)
            booster.set_param({"nthread": 1})  # a request scores a few hundred rows: threads cost more (4x measured)
            scorer = scoring.RankerScorer(booster, features)
        else:
            scorer = scoring.selection_options(config, None)[name]
        return cls(store=store, config=config, phase=phase, sources=store.read_pickle(SOURCES_ARTIFACT),
                   builder=scoring.fit_feature_builder(
                       phase, feature_catalog(catalog, store.read_table("item_segments.parquet")), config),
                   scorer=scorer, catalog=catalog,
                   default_tail_weight=float(info["tail_weight"]),
                   precomputed=PrecomputedLists.from_table(store.read_arrow(SERVING_LISTS), phase.history)
                   if store.exists(SERVING_LISTS) else None,
                   exposure=recorded_exposure(store, config))


def recorded_exposure(store: RunStore, config: Config) -> ExposurePaths | None:
    """The run's recorded exposure paths, or None (said in the log when its config has exposure costs: a run made
    before they existed is served, like it was evaluated, without them)."""
    if store.exists(EXPOSURE_PATHS):
        return ExposurePaths.from_bytes(store.read_bytes(EXPOSURE_PATHS))
    if config.rerank.exposure_strength > 0 and config.rerank.method != "mmr":
        log.warning("run %s has no %s (made before exposure-aware re-ranking): its lists are served without "
                    "exposure costs", store.run_id, EXPOSURE_PATHS)
    return None


class UserLists:
    """The scoring chain for one serving-time user: a known history user, or an ad-hoc user whose history is
    given in the request (built into a `History` and scored by exactly the same sources, features and scorer)."""

    def __init__(self, run: ServedRun):
        self.run = run
        self.is_tail = run.phase.is_tail  # a property over the segments frame: built once, not per request
        self.global_tail_share = global_tail_share(run.phase.history.binary, self.is_tail)
        self.n = max(run.config.retrieve.n_per_source, max(run.config.eval.ks))

    def known(self, user: int, exclude_seen: bool) -> scoring.RankedCandidates:
        phase = self.run.phase
        profile = phase.context.profiles[[user]]
        batch = make_batch(phase.history, [user], profile, phase.context.vectors, users=[user])
        return self._ranked(batch, np.array([user]), self.run.builder, exclude_seen, phase.history.binary[[user]])

    def adhoc(self, history: History, exclude_seen: bool) -> scoring.RankedCandidates:
        """`history`: one user's interactions over the catalog items (same item order and end as the phase)."""
        config = self.run.config
        profile = user_profiles(history, self.run.phase.context.vectors, config.profile.half_life_days,
                                config.profile.max_history)
        builder = self.run.builder.with_users(history, profile)
        batch = make_batch(history, [0], profile, self.run.phase.context.vectors)
        return self._ranked(batch, np.array([0]), builder, exclude_seen, history.binary)

    def _ranked(self, batch, label: np.ndarray, builder, exclude_seen: bool, rows) -> scoring.RankedCandidates:
        run = self.run
        long = candidate_columns(run.sources, batch, self.n, exclude_seen, user_labels=label)
        features = builder.transform_columns(scoring.union_columns(long, run.config))
        scored = scoring.scored_columns(features, run.scorer.score(features), run.config.retrieve.sources)
        appetite = tail_appetite(rows, self.is_tail, [0], global_share=self.global_tail_share)
        return scoring.rank_candidates(scored, run.phase.history, self.is_tail, run.config.rerank.depth,
                                       appetite=appetite)


def adhoc_history(phase: Phase, items: np.ndarray, timestamps: list[int | None] | None) -> History:
    """One ad-hoc user's History over the phase's items: `items` (catalog indices, repeats are repeat
    interactions) at `timestamps` (None, or a None entry: the history's end; later times are clipped to it)."""
    end = int(phase.history.end_ts)
    ts = np.asarray([end if t is None else min(int(t), end) for t in timestamps or [None] * len(items)], np.int64)
    return History.one_user("adhoc", items, ts, phase.history.item_ids, end)


class Recommender:
    """Answers requests for one run. A known user's tail_weight-independent ranked candidates come from the
    batch job's serving lists (`precompute.py`), else from the chain on first request, kept in an LRU of
    `serve.cache_users`; a request then only merges added items and re-ranks at its own tail_weight."""

    def __init__(self, run: str, overrides: list[str] | None = None):
        self.run = ServedRun.load(run, overrides)
        self.store, self.config = self.run.store, self.run.config
        self.added_log = AddedItemsLog(self.store)
        self.catalog_items = ItemIndex.from_run(self.run)
        self.lists = UserLists(self.run)
        history = self.run.phase.history
        self.user_of = {str(user): i for i, user in enumerate(history.user_ids)}
        self.popularity = history.popularity()
        self.cache: OrderedDict[tuple[int, bool], scoring.RankedCandidates] = OrderedDict()
        self.cold_lists: dict[tuple[int, float], pd.DataFrame] = {}
        self.method_configs = {method: dataclasses.replace(self.config, rerank=dataclasses.replace(
            self.config.rerank, method=method)) for method in RERANK_METHODS}
        self._use_added(self.added_log.load())
        self._warm_up()

    def _warm_up(self) -> None:
        """Answer one ad-hoc and one similar-item request before serving: a process's first request on those paths
        otherwise pays torch's import and other first-call costs (2.4 s measured), and on a replica's event loop
        every request queued behind it waits too (the whole p99 of a minute under load came from that)."""
        binary = self.run.phase.history.binary
        user = int(np.argmax(np.diff(binary.indptr)))
        items = [str(self.catalog_items.ids[i]) for i in binary.indices[binary.indptr[user]: binary.indptr[user + 1]]]
        self.recommend(user_id=None, k=10, recent_items=items[:20] or [str(self.catalog_items.ids[0])])
        self.similar(item_id=str(self.catalog_items.ids[0]), k=10)

    def _use_added(self, added: pd.DataFrame) -> None:
        self.added = added
        self.items = self.catalog_items.with_added(added)
        self.cold_lists = {}

    def recommend(self, user_id: str | None = None, k: int = 10, exclude_seen: bool = True,
                  tail_weight: float | None = None, recent_items: list[str] | None = None,
                  recent_timestamps: list[int | None] | None = None, rerank_method: str | None = None,
                  ) -> dict[str, Any]:
        """Known user -> the run's chain; unknown user with known `recent_items` (at `recent_timestamps`, unix
        seconds, one per item; None: at the history's end) -> the same chain over that ad-hoc history; otherwise a
        cold-start answer. `rerank_method`: one of RERANK_METHODS instead of the run's (an A/B variant's)."""
        weight = self.run.default_tail_weight if tail_weight is None else float(tail_weight)
        phase = self.run.phase
        user = self.user_of.get(str(user_id), -1) if user_id is not None else -1
        if user >= 0:
            binary = phase.history.binary
            history_items = binary.indices[binary.indptr[user]: binary.indptr[user + 1]]
            ranked = self._known(user, exclude_seen)
        else:
            if recent_timestamps is not None and len(recent_timestamps) != len(recent_items or []):
                raise UserError("recent_timestamps must give one time per recent item")
            known = np.asarray([self.catalog_items.position_of.get(str(i), -1) for i in recent_items or []],
                               dtype=np.int64)
            history_items = known[known >= 0]
            if not len(history_items):
                return self._cold_start(k, weight, user_id)
            stamps = None if recent_timestamps is None else \
                [t for t, i in zip(recent_timestamps, known, strict=True) if i >= 0]
            ranked = self.lists.adhoc(adhoc_history(phase, history_items, stamps), exclude_seen)
        if "content" in self.config.retrieve.sources:
            ranked = merge_added(ranked, self.items)
        config = self.config if rerank_method is None else self.method_configs[rerank_method]
        # an A/B arm with another method re-ranks against the exposure of the run's own lists (the recorded path)
        path = self.run.exposure.for_weight(weight) if self.run.exposure is not None else None
        items, scores, sources = scoring.rerank_user(ranked, k, weight, config, self.items.is_tail,
                                                     self.items.vectors, path=path)
        return {"user_id": user_id, "cold_start": False, "tail_weight": weight,
                "items": self._explained(items, scores, sources, history_items)}

    def _known(self, user: int, exclude_seen: bool) -> scoring.RankedCandidates:
        precomputed = self.run.precomputed.get(user, exclude_seen) if self.run.precomputed is not None else None
        if precomputed is not None:
            return precomputed
        key = (user, exclude_seen)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        ranked = self.lists.known(user, exclude_seen)
        if self.config.serve.cache_users:
            self.cache[key] = ranked
            if len(self.cache) > self.config.serve.cache_users:
                self.cache.popitem(last=False)
        return ranked

    def _cold_start(self, k: int, weight: float, user_id: str | None) -> dict[str, Any]:
        """The cold-start list depends only on (k, tail_weight): built once per pair until items are added."""
        key = (k, weight)
        if key not in self.cold_lists:
            if len(self.cold_lists) >= 1024:
                self.cold_lists.clear()
            self.cold_lists[key] = scoring.cold_start_lists(self.popularity, self.items.vectors, k, weight,
                                                            self.config.rerank.depth)
        lists = self.cold_lists[key]
        items = [self.items.item(int(i), float(s), "popular", "popular")
                 for i, s in zip(lists["item"], lists["score"], strict=True)]
        return {"user_id": user_id, "cold_start": True, "tail_weight": weight, "items": items}

    def _explained(self, items: np.ndarray, scores: np.ndarray, sources: np.ndarray,
                   history_items: np.ndarray) -> list[dict[str, Any]]:
        """The items with a reason: their source and the history item each is closest to."""
        reasons = [str(source) for source in sources]
        if len(history_items) and len(items):
            sims = self.items.vectors[items] @ self.run.phase.context.vectors[history_items].T
            closest = history_items[np.argmax(sims, axis=1)]
            reasons = [f"{source}: {'bought together with' if source in COLLABORATIVE else 'similar to'} "
                       f"'{self.catalog_items.titles[c]}'" for source, c in zip(reasons, closest, strict=True)]
        return [self.items.item(int(i), float(s), str(src), reason)
                for i, s, src, reason in zip(items, scores, sources, reasons, strict=True)]

    def similar(self, item_id: str | None = None, vector: np.ndarray | None = None, k: int = 10,
                tail_only: bool = False) -> dict[str, Any]:
        exclude = np.zeros(0, dtype=np.int64)
        if item_id is not None:
            exclude = self.items.positions([item_id])
            if not len(exclude):
                raise KeyError(f"unknown item_id {item_id!r}")
            vector = self.items.vectors[exclude[0]]
        return {"items": self.items.nearest(vector, k, tail_only, exclude)}

    def search(self, vector: np.ndarray, k: int = 10, tail_only: bool = False) -> dict[str, Any]:
        return {"items": self.items.nearest(vector, k, tail_only, np.zeros(0, dtype=np.int64))}

    def add_items(self, items: pd.DataFrame, vectors: np.ndarray) -> dict[str, Any]:
        """Add or update items (embedded by the caller): searchable and recommendable as cold items at once,
        and appended durably to the run so a restart keeps them."""
        frame = items[[S.ITEM_ID, S.TITLE]].astype(str).assign(vector=list(np.asarray(vectors, np.float32)))
        self.added_log.append(frame)
        self._use_added(pd.concat([self.added, frame], ignore_index=True).drop_duplicates(S.ITEM_ID, keep="last"))
        return {"added": int(len(frame)), "total_added": int(len(self.added))}

    def reload_added(self) -> None:
        """Re-read the added items (those another replica added) and refresh the index space."""
        self._use_added(self.added_log.load())

    def metadata(self) -> dict[str, Any]:
        counts = pd.Series(self.catalog_items.segments).value_counts().to_dict()
        return {"run_id": self.store.run_id, "model": self.config.embed.model,
                "catalog": int(self.catalog_items.n_catalog), "added_items": int(self.items.n_added),
                "segments": {k: int(v) for k, v in counts.items()}, "users": int(self.run.phase.history.n_users),
                "default_tail_weight": self.run.default_tail_weight,
                "ranker": self.run.scorer.name,
                "precomputed_users": len(self.run.precomputed) if self.run.precomputed is not None else 0}
