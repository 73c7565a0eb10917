import pandas as pd
import pytest

from ray_longtail.config import SplitConfig
from ray_longtail.data.split import DAY, compute_cuts, temporal_split
from ray_longtail.errors import ConfigError, DataError


def events(timestamps):
    return pd.DataFrame({"user_id": ["u"] * len(timestamps), "item_id": ["i"] * len(timestamps),
                         "timestamp": timestamps})


def test_day_cuts_are_exact_and_boundaries_go_right():
    t0 = 1_000_000
    df = events([t0, t0 + 40 * DAY - 1, t0 + 40 * DAY, t0 + 70 * DAY - 1, t0 + 70 * DAY, t0 + 100 * DAY])
    cuts = compute_cuts(df["timestamp"], SplitConfig(test_days=30, valid_days=None))
    assert cuts.cut_test == t0 + 100 * DAY - 30 * DAY
    assert cuts.cut_valid == cuts.cut_test - 30 * DAY
    parts = temporal_split(df, cuts)
    assert parts["train"]["timestamp"].tolist() == [t0, t0 + 40 * DAY - 1]
    assert parts["valid"]["timestamp"].tolist() == [t0 + 40 * DAY, t0 + 70 * DAY - 1]
    assert parts["test"]["timestamp"].tolist() == [t0 + 70 * DAY, t0 + 100 * DAY]


def test_valid_days_differ_from_test_days():
    df = events([0, 100 * DAY])
    cuts = compute_cuts(df["timestamp"], SplitConfig(test_days=10, valid_days=5))
    assert (cuts.cut_test, cuts.cut_valid) == (90 * DAY, 85 * DAY)


def test_fraction_cuts_round_as_specified():
    df = events([10, 1011])  # span 1001
    cuts = compute_cuts(df["timestamp"], SplitConfig(test_days=None, test_fraction=0.1, valid_fraction=0.2))
    assert cuts.cut_test == 10 + round(0.9 * 1001)
    assert cuts.cut_valid == 10 + round(0.7 * 1001)
    cuts_default_valid = compute_cuts(df["timestamp"], SplitConfig(test_days=None, test_fraction=0.1))
    assert cuts_default_valid.cut_valid == 10 + round(0.8 * 1001)


def test_bad_split_settings():
    df = events([0, 10 * DAY])
    with pytest.raises(DataError, match="valid window"):
        compute_cuts(df["timestamp"], SplitConfig(test_days=30))
    with pytest.raises(ConfigError):
        compute_cuts(df["timestamp"], SplitConfig(test_days=None, test_fraction=None))
    with pytest.raises(ConfigError):
        compute_cuts(df["timestamp"], SplitConfig(test_days=None, test_fraction=0.6, valid_fraction=0.5))
