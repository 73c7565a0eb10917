"""Features: one row per (user, candidate) for the ranker, computed from a phase's history only.

Columns: every source's score, raw and min-max scaled within the user's candidates (NaN = not proposed:
XGBoost's missing value), and rank (n + 1 = not proposed), n_sources, user-item cosine, max/mean cosine to the user's
last N history items, popularity percentile (scale-free: the eval history is longer than the fit one), tail/cold
flags, cluster tail share, item age (days since its first interaction in the history; catalog dates are
not used: offline they are often derived from the whole log, label windows included), price relative to
the user's median price, category and brand match with the history, user activity and recency.
The label (item in the phase's label window) is attached separately by `attach_labels`, so no feature can
read the label window.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ray_longtail.data import schema as S
from ray_longtail.history import DAY, History, SourceContext


class FeatureBuilder:
    """Holds per-item and per-user state of one phase; `transform(wide)` adds feature columns to candidates."""

    def __init__(self, source_names: list[str], last_n_history: int = 20):
        self.source_names = source_names
        self.last_n_history = last_n_history

    def fit(self, history: History, context: SourceContext, catalog: pd.DataFrame,
            cluster_tail_share: np.ndarray) -> FeatureBuilder:
        """`catalog` aligned to history.item_ids; `cluster_tail_share` (n_items,) of each item's cluster."""
        self.end_ts_ = history.end_ts
        self.vectors_ = context.vectors
        pop = history.popularity()
        self.log_pop_ = np.log1p(pop).astype(np.float32)
        order = np.argsort(pop, kind="stable")  # popularity percentile: the same scale whatever the history length
        self.pop_pct_ = np.empty(len(pop), dtype=np.float32)
        self.pop_pct_[order] = np.arange(len(pop), dtype=np.float32) / max(len(pop) - 1, 1)
        self.is_tail_ = context.is_tail.astype(np.float32)
        self.is_cold_ = (pop == 0).astype(np.float32)
        self.cluster_tail_share_ = np.asarray(cluster_tail_share, dtype=np.float32)
        self.item_age_days_ = ((history.end_ts - history.item_first_ts) / DAY).astype(np.float32)
        price = pd.to_numeric(catalog.get(S.PRICE, pd.Series(np.nan, index=catalog.index)), errors="coerce")
        self.log_price_ = np.log(price.where(price > 0)).to_numpy(np.float32)
        self.category_codes_ = _codes(catalog, S.CATEGORY)
        self.brand_codes_ = _codes(catalog, S.BRAND)
        for name, value in self._user_state(history, context.profiles).items():
            setattr(self, name, value)
        return self

    def _user_state(self, history: History, profiles: np.ndarray) -> dict[str, object]:
        """Per-user state of `history`'s users (rows aligned to its user_ids): the `*_` user attributes."""
        binary = history.binary.tocsr()
        last = history.last_ts.tocsr()
        user_items = np.split(binary.indices, binary.indptr[1:-1])
        n_items = np.diff(binary.indptr)
        last_seen = np.asarray(last.max(axis=1).toarray()).ravel()
        user_price = [np.nanmedian(self.log_price_[items]) if len(items) and np.isfinite(
            self.log_price_[items]).any() else np.nan for items in user_items]
        return {"profiles_": profiles, "user_items_": user_items,
                "user_item_ts_": np.split(last.data, last.indptr[1:-1]),
                "user_log_items_": np.log1p(n_items).astype(np.float32),
                "user_days_since_": np.where(n_items > 0, (self.end_ts_ - last_seen) / DAY, np.nan).astype(np.float32),
                "user_log_price_": np.asarray(user_price, dtype=np.float32)}

    def with_users(self, history: History, profiles: np.ndarray) -> FeatureBuilder:
        """A copy whose users are `history`'s (user indices 0, 1, ...; an ad-hoc history given at serving time,
        over the same items): their features come from exactly the code that computes a known user's, without
        copying the fitted users' state."""
        import copy

        view = copy.copy(self)
        for name, value in self._user_state(history, profiles).items():
            setattr(view, name, value)
        return view

    @property
    def feature_names(self) -> list[str]:
        per_source = [f"{p}_{s}" for s in self.source_names for p in ("score", "score_norm", "rank")]
        return per_source + ["n_sources", "cos_profile", "cos_max_last", "cos_mean_last", "pop_pct", "is_tail",
                             "is_cold", "cluster_tail_share", "item_age_days", "price_vs_user", "category_match",
                             "brand_match", "user_log_items", "user_days_since"]

    def transform(self, wide: pd.DataFrame) -> pd.DataFrame:
        """`wide` (user, item, score_*/rank_* per source) -> the same rows with every feature column."""
        return pd.DataFrame(self.transform_columns(wide), index=wide.index)

    def transform_columns(self, wide: Mapping[str, np.ndarray] | pd.DataFrame) -> dict[str, np.ndarray]:
        """`transform` over a DataFrame or a dict of column arrays, returning a dict of column arrays (a one-user
        serving request: pandas' per-column costs exceed the feature computations there)."""
        users = np.asarray(wide["user"], dtype=np.int64)
        items = np.asarray(wide["item"], dtype=np.int64)
        out = {name: np.asarray(wide[name]) for name in wide}
        scores = np.stack([out[f"score_{s}"].astype(np.float32) for s in self.source_names], axis=1)
        out["n_sources"] = np.isfinite(scores).sum(axis=1).astype(np.float32)
        item_vectors = self.vectors_[items]
        out["cos_profile"] = np.einsum("ij,ij->i", self.profiles_[users], item_vectors)
        cos_max, cos_mean, category, brand = self._history_similarity(users, items, item_vectors)
        out["cos_max_last"], out["cos_mean_last"] = cos_max, cos_mean
        out["log_pop"] = self.log_pop_[items]
        out["pop_pct"] = self.pop_pct_[items]
        for column, name in enumerate(self.source_names):
            out[f"score_norm_{name}"] = per_user_minmax(users, scores[:, column])
        out["is_tail"] = self.is_tail_[items]
        out["is_cold"] = self.is_cold_[items]
        out["cluster_tail_share"] = self.cluster_tail_share_[items]
        out["item_age_days"] = self.item_age_days_[items]
        out["price_vs_user"] = self.log_price_[items] - self.user_log_price_[users]
        out["category_match"], out["brand_match"] = category, brand
        out["user_log_items"] = self.user_log_items_[users]
        out["user_days_since"] = self.user_days_since_[users]
        return out

    def _history_similarity(self, users: np.ndarray, items: np.ndarray, item_vectors: np.ndarray):
        """Per row: max / mean cosine to the user's last N history items; share of the user's history items
        with the candidate's category / brand (NaN when the candidate has none)."""
        n = len(users)
        cos_max = np.full(n, np.nan, dtype=np.float32)
        cos_mean = np.full(n, np.nan, dtype=np.float32)
        category = np.full(n, np.nan, dtype=np.float32)
        brand = np.full(n, np.nan, dtype=np.float32)
        order = np.argsort(users, kind="stable")
        bounds = np.flatnonzero(np.diff(users[order])) + 1
        for rows in np.split(order, bounds):
            if not len(rows):
                continue
            u = users[rows[0]]
            hist, ts = self.user_items_[u], self.user_item_ts_[u]
            if not len(hist):
                continue
            last = hist[np.argsort(-ts, kind="stable")[: self.last_n_history]]
            sims = item_vectors[rows] @ self.vectors_[last].T
            cos_max[rows], cos_mean[rows] = sims.max(axis=1), sims.mean(axis=1)
            for codes, target in ((self.category_codes_, category), (self.brand_codes_, brand)):
                cand = codes[items[rows]]
                share = (cand[:, None] == codes[hist][None, :]).mean(axis=1)
                target[rows] = np.where(cand >= 0, share, np.nan)
        return cos_max, cos_mean, category, brand


def per_user_minmax(users: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`values` min-max scaled within each user's rows (NaN stays NaN; a user's single value scales to 1): raw
    source scores grow with history length (ItemKNN and EASE sum over history items), so the ranker learns on
    their per-user shape, which is the same in the fit and the eval phase."""
    values = np.asarray(values)
    if not len(values):
        return values.astype(np.float32)
    order = np.argsort(users, kind="stable")
    first = np.r_[True, np.diff(users[order]) != 0]
    group = np.empty(len(users), dtype=np.int64)
    group[order] = np.cumsum(first) - 1
    low = np.fmin.reduceat(values[order], np.flatnonzero(first))[group]
    high = np.fmax.reduceat(values[order], np.flatnonzero(first))[group]
    span = high - low
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(span > 0, (values - low) / np.where(span > 0, span, 1.0), 1.0)
    return np.where(np.isnan(values), np.nan, scaled).astype(np.float32)


def _codes(catalog: pd.DataFrame, column: str) -> np.ndarray:
    """Integer code per item for a text column; -1 for empty values."""
    values = catalog[column].fillna("").astype(str) if column in catalog else pd.Series("", index=catalog.index)
    codes, _ = pd.factorize(values)
    return np.where(values.to_numpy() == "", -1, codes)


def attach_labels(features: pd.DataFrame, truth_users: np.ndarray, truth) -> pd.DataFrame:
    """label = 1 when (user, item) is in the ground truth (csr rows aligned to `truth_users`)."""
    coo = truth.tocoo()
    n_items = truth.shape[1]
    keys = truth_users[coo.row].astype(np.int64) * n_items + coo.col
    row_keys = features["user"].to_numpy(np.int64) * n_items + features["item"].to_numpy(np.int64)
    return features.assign(label=np.isin(row_keys, keys).astype(np.float32))


class FeatureBatch:
    """Ray Data callable class: the fitted FeatureBuilder (an object-store reference) transforms batches of
    candidate rows."""

    def __init__(self, builder_ref):
        import ray

        self.builder = ray.get(builder_ref)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return self.builder.transform(batch)


def features_on_ray(builder: FeatureBuilder, wide: pd.DataFrame, users_per_block: int = 2048) -> pd.DataFrame:
    """`builder.transform(wide)` on a Ray Data actor pool over user shards (blocks never split a user)."""
    import ray

    if wide.empty:
        return builder.transform(wide)
    user_block = wide["user"].to_numpy() // users_per_block
    blocks = [part for _, part in wide.groupby(user_block, sort=True)]
    out = ray.data.from_pandas(blocks).map_batches(
        FeatureBatch, fn_constructor_args=(ray.put(builder),), batch_format="pandas", batch_size=None,
        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1)
    frames = list(out.iter_batches(batch_size=None, batch_format="pandas"))
    return pd.concat(frames, ignore_index=True).sort_values(["user", "item"], kind="stable").reset_index(drop=True)
