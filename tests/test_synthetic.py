"""The synthetic shop generator: determinism, data contract, long-tail shape and file output."""

import numpy as np
import pandas as pd
import pytest

from ray_longtail.data import schema as S
from ray_longtail.data.synthetic import END_TS, generate_shop, write_shop
from ray_longtail.errors import UserError

N_ITEMS = 2000


@pytest.fixture(scope="module")
def shop() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate_shop(n_items=N_ITEMS, seed=7)


@pytest.fixture(scope="module")
def rated() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate_shop(n_items=N_ITEMS, event="rating", seed=7)


def test_deterministic_for_a_seed_and_different_across_seeds(shop):
    items, interactions = generate_shop(n_items=N_ITEMS, seed=7)
    pd.testing.assert_frame_equal(items, shop[0])
    pd.testing.assert_frame_equal(interactions, shop[1])
    other_items, other_interactions = generate_shop(n_items=N_ITEMS, seed=8)
    assert not other_items[S.TITLE].equals(items[S.TITLE])
    assert not other_interactions.equals(interactions)


def test_contract_columns_and_dtypes(shop):
    items, interactions = shop
    assert list(items.columns) == [S.ITEM_ID, S.TITLE, S.DESCRIPTION, S.CATEGORY, S.BRAND, S.PRICE, S.FIRST_SEEN]
    assert list(interactions.columns) == [S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.EVENT, S.VALUE]
    for column in (S.ITEM_ID, S.TITLE, S.DESCRIPTION, S.CATEGORY, S.BRAND):
        assert pd.api.types.is_string_dtype(items[column]), column
        assert items[column].notna().all() and (items[column].str.len() > 0).all(), column
    for column in (S.USER_ID, S.ITEM_ID, S.EVENT):
        assert pd.api.types.is_string_dtype(interactions[column]), column
    assert items[S.PRICE].dtype == np.float64 and (items[S.PRICE] > 0).all()
    assert items[S.FIRST_SEEN].dtype == np.int64
    assert interactions[S.TIMESTAMP].dtype == np.int64
    assert interactions[S.VALUE].dtype == np.float64
    assert len(items) == N_ITEMS
    assert 0.9 * 10 * N_ITEMS < len(interactions) < 1.1 * 10 * N_ITEMS


def test_text_is_realistic(shop):
    items, _ = shop
    assert items[S.ITEM_ID].is_unique
    depth = items[S.CATEGORY].str.split(" > ").str.len()
    assert (depth == 3).all()
    assert 20 <= items[S.CATEGORY].nunique() <= 40
    sentences = items[S.DESCRIPTION].str.count(r"\. ") + 1
    assert sentences.min() >= 3 and items[S.DESCRIPTION].str.len().mean() > 200
    # items of one category share words: the most common title word of each category is in many of its titles
    words = items[S.TITLE].str.lower().str.split()
    for _, group in words.groupby(items[S.CATEGORY]):
        top_share = group.explode().value_counts().iloc[0] / len(group)
        assert top_share > 0.15


def test_interactions_reference_items_after_first_seen(shop):
    items, interactions = shop
    assert interactions[S.ITEM_ID].isin(items[S.ITEM_ID]).all()
    merged = interactions.merge(items[[S.ITEM_ID, S.FIRST_SEEN]], on=S.ITEM_ID, how="left")
    assert (merged[S.TIMESTAMP] >= merged[S.FIRST_SEEN]).all()
    assert interactions[S.TIMESTAMP].between(END_TS - 365 * 86400, END_TS).all()
    assert interactions[S.TIMESTAMP].is_monotonic_increasing
    # some items are added late in the span
    assert (items[S.FIRST_SEEN] > END_TS - 30 * 86400).sum() >= 0.02 * N_ITEMS


def test_long_tail_cold_items_and_heavy_tailed_users(shop):
    items, interactions = shop
    counts = interactions[S.ITEM_ID].value_counts().reindex(items[S.ITEM_ID], fill_value=0)
    ranked = np.sort(counts.to_numpy())[::-1]
    assert ranked[: N_ITEMS // 5].sum() > 0.5 * ranked.sum()
    assert (counts == 0).sum() > 0
    per_user = interactions[S.USER_ID].value_counts()
    assert (per_user == 1).mean() > 0.15
    assert per_user.max() >= 100
    # repeated purchases of the same item happen, but are not the norm
    repeats = interactions.duplicated([S.USER_ID, S.ITEM_ID]).mean()
    assert 0.0 < repeats < 0.5
    assert set(interactions[S.EVENT].unique()) == {S.PURCHASE}
    assert (interactions[S.VALUE] >= 1).all() and (interactions[S.VALUE] == interactions[S.VALUE].round()).all()


def test_rating_mode(rated):
    _, interactions = rated
    assert set(interactions[S.EVENT].unique()) == {"rating"}
    assert set(interactions[S.VALUE].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert interactions[S.VALUE].nunique() == 5
    assert not interactions.duplicated([S.USER_ID, S.ITEM_ID]).any()


def test_sizes_users_and_arguments():
    items, interactions = generate_shop(n_items=50, interactions_per_item=4.0, n_users=7, days=30, seed=1)
    assert len(items) == 50 and interactions[S.USER_ID].nunique() == 7
    assert interactions[S.TIMESTAMP].min() >= END_TS - 30 * 86400
    with pytest.raises(UserError):
        generate_shop(n_items=10, event="click")
    with pytest.raises(UserError):
        generate_shop(n_items=0)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_write_shop_round_trip(tmp_path, fmt):
    items_path, interactions_path = write_shop(tmp_path / fmt, fmt=fmt, n_items=300, seed=3)
    assert items_path.endswith(f"items.{fmt}") and interactions_path.endswith(f"interactions.{fmt}")
    items, interactions = generate_shop(n_items=300, seed=3)
    read = pd.read_parquet if fmt == "parquet" else pd.read_csv
    pd.testing.assert_frame_equal(read(items_path), items, check_dtype=False)
    pd.testing.assert_frame_equal(read(interactions_path), interactions, check_dtype=False)
    assert read(interactions_path)[S.TIMESTAMP].dtype == np.int64
    with pytest.raises(UserError):
        write_shop(tmp_path, fmt="json", n_items=10)
