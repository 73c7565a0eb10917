"""`generate_shop` / `write_shop`: a whole synthetic shop (catalog + interactions) in the data contract, as
frames or as Parquet / CSV files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ray_longtail.data import schema as S
from ray_longtail.data.synthetic.catalog import make_items, retail_tables
from ray_longtail.data.synthetic.interactions import ItemChooser, make_interactions, make_users
from ray_longtail.data.synthetic.magazines import (
    ALSO_BUY,
    ALSO_VIEW,
    CSV_SEPARATORS,
    magazine_tables,
    make_magazines,
    related_items,
)
from ray_longtail.data.synthetic.profiles import DAY, END_TS, EVENTS, Profile, get_profile
from ray_longtail.data.synthetic.vectorised import make_ids
from ray_longtail.errors import UserError


def generate_shop(n_items: int | None = None, interactions_per_item: float | None = None, n_users: int | None = None,
                  days: int | None = None, event: str | None = None, seed: int = 0,
                  profile: str | Profile = "retail") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate a synthetic long-tail shop; the same arguments always give equal frames.

    Args:
        n_items: catalog size.
        interactions_per_item: target average rows per catalog item (the total is about n_items times this; in
            "rating" mode repeated (user, item) pairs are dropped, so slightly fewer).
        n_users: number of users, each with at least one row; defaults to about n_items * interactions_per_item /
            profile.rows_per_user (8 in retail).
        days: length of the time span, which ends at END_TS (2024-01-01 00:00 UTC).
        event: "purchase" (value = quantity >= 1, repeat purchases happen) or "rating" (value = rating 1..5,
            higher when the item matches the user's categories and attribute word).
        seed: random seed.
        profile: a name in PROFILES or a Profile; arguments left as None take its defaults (retail: 5000 items,
            10 rows per item, 365 days, purchases; magazines: 2500 items, 36 rows per item, 17 years, ratings).

    Returns:
        (items, interactions):
        items, (n_items, 7): item_id str (unique, "SKU0000042"), title str, description str (several sentences),
        category str ("Home > Kitchen > Cookware"), brand str, price float64, first_seen_ts int64 (unix seconds;
        some before the span, some late in it). The magazines profile ("MAG0042") has 9 columns: description and
        category are lists of strings (paragraphs; ["Magazine Subscriptions", group, ..., genre]), price is NaN
        for some items, and also_buy / also_view are lists of item ids (possibly empty); list cells are numpy
        arrays, as pandas reads them from Parquet.
        interactions, (about n_items * interactions_per_item, 5), sorted by timestamp: user_id str ("U0000042"),
        item_id str, timestamp int64 (unix seconds, >= the item's first_seen_ts), event str, value float64.
    """
    items, interactions = _generate(n_items, interactions_per_item, n_users, days, event, seed, profile)
    return items.to_pandas(), interactions.to_pandas()


def _generate(n_items: int | None = None, interactions_per_item: float | None = None, n_users: int | None = None,
              days: int | None = None, event: str | None = None, seed: int = 0, profile: str | Profile = "retail"
              ) -> tuple[pa.Table, pa.Table]:
    """generate_shop as Arrow tables, so that list columns keep their list type on the way to the files."""
    p = get_profile(profile)
    n_items = p.n_items if n_items is None else n_items
    interactions_per_item = p.interactions_per_item if interactions_per_item is None else interactions_per_item
    days, event = p.days if days is None else days, p.event if event is None else event
    if event not in EVENTS:
        raise UserError(f"event must be one of {', '.join(EVENTS)}, got {event!r}")
    if n_items < 1 or days < 1 or not interactions_per_item > 0:
        raise UserError(f"need n_items >= 1, days >= 1 and interactions_per_item > 0; got n_items={n_items}, "
                        f"days={days}, interactions_per_item={interactions_per_item}")
    n_rows = max(1, int(round(n_items * interactions_per_item)))
    if n_users is None:
        n_users = max(1, int(round(n_rows / p.rows_per_user)))
    if n_users < 1:
        raise UserError(f"n_users must be >= 1, got {n_users}")
    rng = np.random.default_rng(seed)
    t_end, t_start = END_TS, END_TS - days * DAY
    if p.catalog is None:
        T, catalog = retail_tables(), make_items(rng, n_items, t_start, t_end, p)
    else:
        T, catalog = magazine_tables(), make_magazines(rng, n_items, t_start, t_end, p)
    n_leaves = len(T.leaf_materials[1])
    leaf_weight = np.bincount(catalog.leaf, weights=catalog.weight, minlength=n_leaves)
    users = make_users(rng, T, n_users, n_rows, leaf_weight, t_start, t_end, p)
    chooser = ItemChooser(catalog, n_leaves, len(T.materials) + len(T.styles))
    user, item, ts, value = make_interactions(rng, catalog, users, event, t_end, chooser, p)
    interactions = pa.table({
        S.USER_ID: pc.take(make_ids("U", n_users), pa.array(user)),
        S.ITEM_ID: pc.take(catalog.table[S.ITEM_ID], pa.array(item)),
        S.TIMESTAMP: pa.array(ts, type=pa.int64()),
        S.EVENT: pa.repeat(pa.scalar(event, pa.string()), len(user)),
        S.VALUE: pa.array(value, type=pa.float64()),
    })
    items = catalog.table
    if p.catalog is not None:
        also_buy, also_view = related_items(rng, catalog, user, item, ts, p.catalog)
        items = items.append_column(ALSO_BUY, also_buy).append_column(ALSO_VIEW, also_view)
    return items, interactions


def write_shop(out_dir: str | Path, fmt: str = "parquet", **kwargs) -> tuple[str, str]:
    """Write generate_shop(**kwargs) to out_dir/items.<fmt> and out_dir/interactions.<fmt>.

    fmt: "parquet" or "csv". Parquet stores list columns as Arrow list<string>; CSV has no lists, so a list cell is
    joined into one string: category with " > " (the retail form), the others (description paragraphs, also_buy /
    also_view ids) with a space. Returns the (items, interactions) paths.
    """
    if fmt not in ("parquet", "csv"):
        raise UserError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    tables = _generate(**kwargs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = str(out / f"items.{fmt}"), str(out / f"interactions.{fmt}")
    for table, path in zip(tables, paths, strict=True):
        if fmt == "parquet":  # the explicit schema keeps list<string> even where every list is empty
            lists = any(pa.types.is_list(field.type) for field in table.schema)
            table.to_pandas().to_parquet(path, index=False, **({"schema": table.schema} if lists else {}))
        else:
            _joined_lists(table).to_pandas().to_csv(path, index=False)
    return paths


def _joined_lists(table: pa.Table) -> pa.Table:
    """The table with each list<string> column joined into a string column (see write_shop), for CSV."""
    for i, field in enumerate(table.schema):
        if pa.types.is_list(field.type):
            joined = pc.binary_join(table[field.name], CSV_SEPARATORS.get(field.name, " "))
            table = table.set_column(i, field.name, pc.fill_null(joined, ""))
    return table
