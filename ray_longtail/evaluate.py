"""Evaluate: turn ranked lists into the metrics of DESIGN.md for every system, plus candidate recall per source.

Systems are given as long frames (user index, item index, rank 1..) and evaluated on a `Phase` (its users,
ground truth, popularity and segments). Baselines are the candidate sources used alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ray_longtail.data import schema as S
from ray_longtail.metrics import METRIC_NAMES, candidate_recall, ranking_metrics
from ray_longtail.phase import Phase


def rec_matrix(users: np.ndarray, lists: pd.DataFrame, width: int) -> np.ndarray:
    """(len(users), width) item indices from a long frame (user, item, rank), -1 where a list is shorter.

    `users` must be sorted; rows of `lists` for other users or with rank > width are ignored.
    """
    out = np.full((len(users), width), -1, dtype=np.int64)
    user = lists["user"].to_numpy(np.int64)
    pos = np.searchsorted(users, user)
    pos_clipped = np.minimum(pos, len(users) - 1) if len(users) else pos
    rank = lists["rank"].to_numpy(np.int64)
    keep = (len(users) > 0) & (pos < len(users)) & (users[pos_clipped] == user) & (rank >= 1) & (rank <= width)
    out[pos[keep], rank[keep] - 1] = lists["item"].to_numpy()[keep]
    return out


def rank_by_score(frame: pd.DataFrame, score: str, k: int) -> pd.DataFrame:
    """Top-k rows per user by descending `score` (ties: lower item index), with a 1-based `rank` column."""
    ordered = frame.sort_values(["user", score, "item"], ascending=[True, False, True], kind="stable")
    ordered = ordered.assign(rank=ordered.groupby("user").cumcount() + 1)
    return ordered[ordered["rank"] <= k].reset_index(drop=True)


def system_metrics(phase: Phase, lists: pd.DataFrame, ks: list[int]) -> dict[str, float]:
    """Metrics of one system's lists (long frame user, item, rank) on the phase's evaluated users."""
    recs = rec_matrix(phase.users, lists, max(ks))
    return ranking_metrics(recs, phase.truth, phase.history.popularity(), phase.is_tail, phase.is_cold,
                           n_hist_users=phase.history.n_users, ks=ks)


def baseline_lists(candidates: pd.DataFrame, baselines: list[str]) -> dict[str, pd.DataFrame]:
    """Each baseline source's own top lists (its candidates), keyed by its display name (DESIGN.md)."""
    from ray_longtail.sources.registry import display_name

    lists = {display_name(s): candidates[candidates["source"] == s] for s in baselines}
    return {name: frame for name, frame in lists.items() if len(frame)}


def baseline_metrics(phase: Phase, candidates: pd.DataFrame, baselines: list[str],
                     ks: list[int]) -> dict[str, dict[str, float]]:
    """Each baseline source alone as a recommender (its own top-K)."""
    return {name: system_metrics(phase, lists, ks) for name, lists in baseline_lists(candidates, baselines).items()}


def candidate_recall_table(phase: Phase, candidates: pd.DataFrame, union_sources: list[str]) -> dict[str, dict]:
    """Share of ground-truth items present in each source's candidates and in the union (overall and tail)."""
    positions = np.searchsorted(phase.users, candidates["user"].to_numpy())
    positions = np.minimum(positions, max(len(phase.users) - 1, 0))
    evaluated = (phase.users[positions] == candidates["user"].to_numpy()) if len(phase.users) else np.zeros(0, bool)
    frame = candidates[evaluated].assign(pos=positions[evaluated])
    out = {}
    for source in sorted(frame["source"].unique()):
        part = frame[frame["source"] == source]
        out[source] = candidate_recall(part["pos"].to_numpy(), part["item"].to_numpy(), phase.truth, phase.is_tail)
    union = frame[frame["source"].isin(union_sources)]
    out["union"] = candidate_recall(union["pos"].to_numpy(), union["item"].to_numpy(), phase.truth, phase.is_tail)
    return out


def recommendations_frame(phase: Phase, lists: pd.DataFrame, source_column: str = "source") -> pd.DataFrame:
    """`recommendations.parquet`: user_id, item_id, rank, score, segment, source for evaluated users."""
    users = set(phase.users.tolist())
    lists = lists[lists["user"].isin(users)]
    return pd.DataFrame({
        S.USER_ID: phase.history.user_ids[lists["user"].to_numpy()].astype(str),
        S.ITEM_ID: phase.history.item_ids[lists["item"].to_numpy()].astype(str),
        S.RANK: lists["rank"].to_numpy(np.int32),
        S.SCORE: lists["score"].to_numpy(np.float32),
        S.SEGMENT: phase.segments[S.SEGMENT].to_numpy()[lists["item"].to_numpy()],
        S.SOURCE: lists[source_column].astype(str).to_numpy(),
    })


def metrics_table(systems: dict[str, dict[str, float]], k: int = 10) -> str:
    """The quality table as text (one row per system), as the CLI prints it and the README shows it."""
    columns = METRIC_NAMES
    header = f"{'system':<12}" + "".join(f"{c + '@' + str(k):>15}" for c in columns)
    lines = [header]
    for name, values in systems.items():
        lines.append(f"{name:<12}" + "".join(f"{values.get(f'{c}@{k}', float('nan')):>15.4f}" for c in columns))
    return "\n".join(lines)
