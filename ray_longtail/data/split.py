"""Temporal split exactly as DESIGN.md §Evaluation protocol: train < cut_valid <= valid < cut_test <= test."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ray_longtail.config import SplitConfig
from ray_longtail.data import schema as S
from ray_longtail.errors import ConfigError, DataError

DAY = 86400


@dataclass(frozen=True)
class Cuts:
    cut_valid: int
    cut_test: int
    t_min: int
    t_max: int


def compute_cuts(timestamps: pd.Series, config: SplitConfig) -> Cuts:
    """Cut points from the time span of `timestamps` (unix seconds) by days or by fractions of the span."""
    t_min, t_max = int(timestamps.min()), int(timestamps.max())
    span = t_max - t_min
    if config.test_days is not None:
        valid_days = config.valid_days if config.valid_days is not None else config.test_days
        if config.test_days <= 0 or valid_days <= 0:
            raise ConfigError("split.test_days and split.valid_days must be > 0")
        cut_test = int(round(t_max - config.test_days * DAY))
        cut_valid = int(round(cut_test - valid_days * DAY))
    elif config.test_fraction is not None:
        f_test = config.test_fraction
        f_valid = config.valid_fraction if config.valid_fraction is not None else f_test
        if not (0 < f_test and 0 < f_valid and f_test + f_valid < 1):
            raise ConfigError("split.test_fraction and split.valid_fraction must be > 0 and sum to < 1")
        cut_test = t_min + int(round((1 - f_test) * span))
        cut_valid = t_min + int(round((1 - f_test - f_valid) * span))
    else:
        raise ConfigError("set split.test_days or split.test_fraction")
    if cut_valid <= t_min:
        raise DataError(f"interactions span only {span / DAY:.1f} days: the valid window starts before the first "
                        "interaction; use smaller split.test_days/valid_days or split.test_fraction")
    return Cuts(cut_valid=cut_valid, cut_test=cut_test, t_min=t_min, t_max=t_max)


def temporal_split(interactions: pd.DataFrame, cuts: Cuts) -> dict[str, pd.DataFrame]:
    """{"train", "valid", "test"} frames: ts < cut_valid, cut_valid <= ts < cut_test, ts >= cut_test."""
    ts = interactions[S.TIMESTAMP]
    return {
        "train": interactions[ts < cuts.cut_valid].reset_index(drop=True),
        "valid": interactions[(ts >= cuts.cut_valid) & (ts < cuts.cut_test)].reset_index(drop=True),
        "test": interactions[ts >= cuts.cut_test].reset_index(drop=True),
    }
