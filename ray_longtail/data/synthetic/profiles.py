"""Profiles of the synthetic shop generator: named parameter sets (retail, the default; magazines, an
Amazon-style ratings catalogue) and the generator's fixed knobs (popularity shape, catalog timing, choice modes).
"""

from __future__ import annotations

from dataclasses import dataclass

from ray_longtail.errors import UserError

END_TS = 1704067200  # 2024-01-01 00:00:00 UTC: the end of the generated time span
DAY = 86400
EVENTS = ("purchase", "rating")
RATING = "rating"

# Generation knobs (shares are of rows / items; tuned so that the contract tests and the long-tail shape hold at any
# size from a few hundred items to millions).
ZIPF_EXPONENT = 1.0  # item popularity ~ 1 / (rank + ZIPF_OFFSET) ** ZIPF_EXPONENT
ZIPF_OFFSET = 3.0
COLD_SHARE = 0.08  # items that are never interacted with (drawn from the less popular 70% of ranks)
CATALOG_SHARE = 0.55  # items already in the catalog before the time span starts
LATE_SHARE = 0.08  # items added in the last LATE_WINDOW of the time span
LATE_WINDOW = 0.08
# How a row's item is chosen: global popularity, popularity within a preferred leaf (attribute-biased), uniform among
# non-cold items of a preferred leaf whose title has the user's attribute word, the same across all categories.
MODE_SHARES = (0.30, 0.45, 0.18, 0.07)
ATTR_CANDIDATES = 3  # popularity draws per row in mode 1; the first with the user's attribute word wins
REPEAT_SHARE = 0.10  # rows (after a user's first) that try to re-buy one of the user's earlier items ...
REPEAT_ACCEPT = (0.3, 1.0)  # ... accepted with these probabilities for durable goods / consumables
MAX_REJECTION_ROUNDS = 8


# ------------------------------------------------------------------------------------------------------------------
# Profiles: named parameter sets (the defaults are the retail shop; magazines is an Amazon-style ratings catalogue)
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MagazineCatalog:
    """Knobs of the magazines catalogue, whose items carry list-valued columns like Amazon metadata dumps.

    Descriptions are lists of paragraphs: 1 + Poisson(`extra_paragraphs`) paragraphs (at most `max_paragraphs`) of
    `sentences` (inclusive range) sentences each, so that lengths vary a lot around a few hundred words; a few are
    empty lists, as in scraped metadata.
    """

    extra_paragraphs: float = 3.0
    max_paragraphs: int = 9
    sentences: tuple[int, int] = (3, 6)
    empty_description_share: float = 0.03
    price_missing_share: float = 0.35  # scraped prices are often missing
    also_buy_max: int = 12  # most co-interacted items kept per item
    also_buy_window: int = 5  # a row is paired with the user's next this many rows (bounds the cost for heavy users)
    also_view_mean: float = 6.0  # draws of similar items per item (before dropping duplicates and the item itself)
    also_view_empty_share: float = 0.3


@dataclass(frozen=True)
class Profile:
    """The parameters of one kind of shop; `generate_shop` arguments left as None take these defaults.

    The defaults are the retail shop exactly (same draws, same output for a seed). Every knob is a general mechanism
    (activity shape, time trend, rating scale), so a profile describes a kind of data, not one data set.
    """

    name: str = "retail"
    event: str = "purchase"
    n_items: int = 5000
    interactions_per_item: float = 10.0
    rows_per_user: float = 8.0  # default users = rows / this
    days: int = 365
    # users: None lets single-interaction users emerge from the Poisson draws; a share pins it (the rest get >= 2)
    single_share: float | None = None
    activity_sigma: float = 1.8  # log-normal spread of user activity: larger means heavier heavy users
    growth: float = 0.0  # activity grows by e**growth over the span (user centres have density ~ exp(growth * t))
    # items
    catalog_share: float = CATALOG_SHARE
    late_share: float = LATE_SHARE
    late_window: float = LATE_WINDOW
    # ratings: round(base + leaf match + attribute match + quality + noise), a share of disappointed raters -4
    rating_base: float = 3.0
    rating_noise: float = 0.9
    dislike_share: float = 0.0
    time_step: int = 1  # timestamps (and first_seen_ts) are multiples of this many seconds
    catalog: MagazineCatalog | None = None  # None: the retail catalogue (flat string columns)


PROFILES = {
    "retail": Profile(),
    "magazines": Profile(
        name="magazines", event=RATING, n_items=2500, interactions_per_item=36.0, rows_per_user=1.25,
        days=17 * 365, single_share=0.85, activity_sigma=1.8, growth=3.0, catalog_share=0.3, rating_base=3.7,
        rating_noise=1.0, dislike_share=0.08, time_step=DAY, catalog=MagazineCatalog()),
}


def get_profile(profile: str | Profile) -> Profile:
    """The Profile of a name in PROFILES (or the Profile itself)."""
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise UserError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    return PROFILES[profile]
