"""Users (tastes, activity, active periods) and their interactions: each row's item chosen by popularity,
by category and attribute word, or uniformly from the tail, with repeats, purchases or ratings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ray_longtail.data.synthetic.catalog import Catalog, RetailTables
from ray_longtail.data.synthetic.profiles import (
    ATTR_CANDIDATES,
    DAY,
    MAX_REJECTION_ROUNDS,
    MODE_SHARES,
    RATING,
    REPEAT_ACCEPT,
    REPEAT_SHARE,
    Profile,
)
from ray_longtail.data.synthetic.vectorised import GroupSampler, first_occurrence, pick_from

if TYPE_CHECKING:
    from ray_longtail.data.synthetic.magazines import MagazineTables

@dataclass
class _Users:
    """Per-user arrays, all (n_users,) unless noted."""

    count: np.ndarray  # rows of the user (>= 1)
    prefs: np.ndarray  # (n_users, 3) preferred leaves; only the first n_prefs of a row are used
    n_prefs: np.ndarray
    attribute: np.ndarray  # preferred attribute id (material id, or n_materials + style id)
    start: np.ndarray  # active period [start, end] in unix seconds
    end: np.ndarray


def _activity(rng: np.random.Generator, n_users: int, n_rows: int, profile: Profile) -> np.ndarray:
    """(n_users,) rows per user, >= 1, summing to about n_rows: heavy-tailed, since most shoppers and raters come
    once and a few come back all the time. With `profile.single_share` that share of users has exactly one row and
    the others at least two; otherwise the single-row share is whatever the Poisson draws give."""
    cap = max(20 * n_rows // n_users, min(1000, max(n_rows // 40, 50)))
    if profile.single_share is None:
        # everyone has one row, the rest is spread by log-normal weights (capped)
        activity = rng.lognormal(0.0, profile.activity_sigma, n_users)
        extra = rng.poisson(max(n_rows - n_users, 0) * activity / activity.sum())
        return 1 + np.minimum(extra, cap - 1)
    active = rng.random(n_users) >= profile.single_share
    activity = rng.lognormal(0.0, profile.activity_sigma, n_users) * active
    budget = max(n_rows - n_users - int(active.sum()), 0)
    extra = rng.poisson(budget * activity / max(activity.sum(), 1e-12))
    return 1 + active + np.minimum(extra, max(cap - 2, 0))


def _grown(u: np.ndarray, growth: float) -> np.ndarray:
    """Uniform draws u in [0, 1) mapped to a density ~ exp(growth * x) on [0, 1): later times are likelier when
    growth > 0, as on platforms whose audience grows over the years. growth = 0 is the identity."""
    return np.log1p(u * np.expm1(growth)) / growth if growth else u


def make_users(rng: np.random.Generator, T: RetailTables | MagazineTables, n_users: int, n_rows: int,
                leaf_weight: np.ndarray, t_start: int, t_end: int, profile: Profile) -> _Users:
    """Users with activity, tastes and active periods. T: the vocabulary tables (`retail_tables()` or
    `magazine_tables()`), for the per-leaf attribute words users prefer."""
    count = _activity(rng, n_users, n_rows, profile)
    # tastes: 1-3 leaves (more popular leaves are preferred more often), one attribute word of the first leaf
    prefs = rng.choice(len(leaf_weight), size=(n_users, 3), p=leaf_weight / leaf_weight.sum())
    n_prefs = rng.choice([1, 2, 3], size=n_users, p=[0.4, 0.35, 0.25])
    first = prefs[:, 0]
    style = len(T.materials) + pick_from(T.leaf_styles, first, rng.random(n_users))
    attribute = np.where(rng.random(n_users) < 0.45, style, pick_from(T.leaf_materials, first, rng.random(n_users)))
    # active period around a random centre; heavier users stay longer
    span = t_end - 1 - t_start
    centre = t_start + _grown(rng.random(n_users), profile.growth) * span
    half = span * np.minimum(0.6, (0.01 + 0.03 * np.sqrt(count)) * rng.gamma(2.0, 0.5, n_users))
    half = np.maximum(half, DAY)
    start = np.clip(centre - half, t_start, t_end - 1).astype(np.int64)
    end = np.clip(centre + half, t_start, t_end - 1).astype(np.int64)
    return _Users(count=count, prefs=prefs, n_prefs=n_prefs, attribute=attribute, start=start, end=end)


class ItemChooser:
    """Vectorised item choice for interaction rows, by mode (see MODE_SHARES)."""

    def __init__(self, catalog: Catalog, n_leaves: int, n_attributes: int):
        n = len(catalog.leaf)
        self.catalog, self.n_attributes = catalog, n_attributes
        self.popular = GroupSampler(np.zeros(n, dtype=np.int64), catalog.weight, 1)
        self.in_leaf = GroupSampler(catalog.leaf, catalog.weight, n_leaves)
        # (item, attribute) pairs of non-cold items: material always, style when the title has one
        warm = catalog.weight > 0
        has_style = warm & (catalog.style >= 0)
        self.pair_item = np.concatenate([np.flatnonzero(warm), np.flatnonzero(has_style)])
        pair_attr = np.concatenate([catalog.material[warm], catalog.style[has_style]])
        pair_leaf = catalog.leaf[self.pair_item]
        ones = np.ones(len(self.pair_item))
        self.leaf_attr = GroupSampler(pair_leaf * n_attributes + pair_attr, ones, n_leaves * n_attributes)
        self.attr = GroupSampler(pair_attr, ones, n_attributes)

    def has_attribute(self, item: np.ndarray, attribute: np.ndarray) -> np.ndarray:
        return (self.catalog.material[item] == attribute) | (self.catalog.style[item] == attribute)

    def choose(self, rng: np.random.Generator, mode: np.ndarray, leaf: np.ndarray, attribute: np.ndarray) -> np.ndarray:
        """mode, leaf, attribute: (m,) per row; returns (m,) item indices."""
        m = len(mode)
        item = np.empty(m, dtype=np.int64)
        # modes 2/3 fall back to mode 1 when the group is empty, mode 1 falls back to mode 0
        key = leaf * self.n_attributes + attribute
        mode = np.where((mode == 2) & (self.leaf_attr.total[key] == 0), 1, mode)
        mode = np.where((mode == 3) & (self.attr.total[attribute] == 0), 1, mode)
        mode = np.where((mode == 1) & (self.in_leaf.total[leaf] == 0), 0, mode)
        rows = np.flatnonzero(mode == 0)
        item[rows] = self.popular.sample(np.zeros(len(rows), dtype=np.int64), rng.random(len(rows)))
        rows = np.flatnonzero(mode == 1)
        best = self.in_leaf.sample(leaf[rows], rng.random(len(rows)))
        found = self.has_attribute(best, attribute[rows])
        for _ in range(ATTR_CANDIDATES - 1):
            candidate = self.in_leaf.sample(leaf[rows], rng.random(len(rows)))
            take = ~found & self.has_attribute(candidate, attribute[rows])
            best = np.where(take, candidate, best)
            found |= take
        item[rows] = best
        rows = np.flatnonzero(mode == 2)
        item[rows] = self.pair_item[self.leaf_attr.sample(key[rows], rng.random(len(rows)))]
        rows = np.flatnonzero(mode == 3)
        item[rows] = self.pair_item[self.attr.sample(attribute[rows], rng.random(len(rows)))]
        return item


def make_interactions(rng: np.random.Generator, catalog: Catalog, users: _Users, event: str, t_end: int,
                       chooser: ItemChooser, profile: Profile
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows as arrays (user, item, timestamp, value), each (n_rows,), sorted by (timestamp, user)."""
    user = np.repeat(np.arange(len(users.count), dtype=np.int64), users.count)
    n = len(user)
    ts = users.start[user] + (rng.random(n) * (users.end - users.start)[user]).astype(np.int64)
    mode = np.searchsorted(np.cumsum(MODE_SHARES)[:-1], rng.random(n), side="right")
    leaf = users.prefs[user, (rng.random(n) * users.n_prefs[user]).astype(np.int64)]
    attribute = users.attribute[user]
    # an item can only be chosen once it is in the catalog: redraw rows that hit a later item, then move the few
    # left to a random time after the item's first_seen
    item = np.empty(n, dtype=np.int64)
    todo = np.arange(n)
    for _ in range(MAX_REJECTION_ROUNDS):
        item[todo] = chooser.choose(rng, mode[todo], leaf[todo], attribute[todo])
        todo = todo[catalog.first_seen[item[todo]] > ts[todo]]
        if not len(todo):
            break
    if len(todo):
        seen = catalog.first_seen[item[todo]]
        ts[todo] = seen + (rng.random(len(todo)) * (t_end - 1 - seen)).astype(np.int64)
    # per user in time order: repeat purchases copy one of the user's earlier items (available then, so now too)
    order = np.lexsort((ts, user))
    user, item, ts = user[order], item[order], ts[order]
    offset = np.concatenate([[0], np.cumsum(users.count)[:-1]])[user]
    position = np.arange(n) - offset
    if event == RATING:
        keep = first_occurrence(user * len(catalog.leaf) + item)
        user, item, ts = user[keep], item[keep], ts[keep]
        value = _ratings(rng, catalog, users, chooser, user, item, profile)
    else:
        earlier = offset + (rng.random(n) * position).astype(np.int64)
        accept = np.where(catalog.consumable[item[earlier]], REPEAT_ACCEPT[1], REPEAT_ACCEPT[0])
        repeat = (position > 0) & (rng.random(n) < REPEAT_SHARE * accept)
        item = np.where(repeat, item[earlier], item)
        value = np.minimum(rng.geometric(0.7, n), 12).astype(np.float64)
    if profile.time_step > 1:  # floors keep ts >= first_seen_ts, which is floored too
        ts = ts - ts % profile.time_step
    order = np.lexsort((user, ts))
    return user[order], item[order], ts[order], value[order]


def _ratings(rng: np.random.Generator, catalog: Catalog, users: _Users, chooser: ItemChooser, user: np.ndarray,
             item: np.ndarray, profile: Profile) -> np.ndarray:
    """(m,) stars 1..5 of the rows (user, item), each (m,): higher when the item is in one of the user's leaves and
    has the user's attribute word, so ratings carry the same taste signal as the choices. `profile.dislike_share`
    of the rows lose 4 stars, which gives the J-shape (many 5s, a bump of 1s) of public rating dumps."""
    leaf_match = (users.prefs[user] == catalog.leaf[item][:, None])
    leaf_match = (leaf_match & (np.arange(3) < users.n_prefs[user][:, None])).any(axis=1)
    score = (profile.rating_base + 1.0 * leaf_match + 0.8 * chooser.has_attribute(item, users.attribute[user])
             + catalog.quality[item] + rng.normal(0.0, profile.rating_noise, len(user)))
    if profile.dislike_share > 0:
        score = score - 4.0 * (rng.random(len(user)) < profile.dislike_share)
    return np.clip(np.round(score), 1, 5)
