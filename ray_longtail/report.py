"""Report: `report.md` with the quality table, candidate recall, discovery summary and plots (PNG):
the popularity curve with the head/tail cut, exposure by popularity decile per system, recall by segment."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

from ray_longtail.data import schema as S
from ray_longtail.discover import discovery_summary
from ray_longtail.evaluate import baseline_lists, metrics_table, rec_matrix
from ray_longtail.phase import Phase


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def popularity_plot(phase: Phase) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pop = np.sort(phase.history.popularity())[::-1]
    n_head = int((phase.segments[S.SEGMENT] == S.HEAD).sum())
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, len(pop) + 1), pop + 1)
    ax.axvline(n_head, color="red", linestyle="--", label=f"head | tail cut ({n_head} items)")
    ax.set(yscale="log", xlabel="item rank by popularity", ylabel="distinct users + 1", title="Popularity curve")
    ax.legend()
    data = _png(fig)
    plt.close(fig)
    return data


def exposure_and_segment_recall(phase: Phase, lists: dict[str, pd.DataFrame], k: int) -> tuple[pd.DataFrame,
                                                                                              pd.DataFrame]:
    """Share of top-k slots per popularity decile (decile 1 = most popular) and recall@k per item segment."""
    pop = phase.history.popularity()
    order = np.lexsort((phase.history.item_ids.astype(str), -pop))
    decile = np.empty(len(pop), dtype=np.int64)
    decile[order] = np.arange(len(pop)) * 10 // max(len(pop), 1) + 1
    segment = phase.segments[S.SEGMENT].to_numpy()
    exposure, recall = {}, {}
    truth = phase.truth.tocoo()
    for name, frame in lists.items():
        recs = rec_matrix(phase.users, frame, k)
        items = recs[recs >= 0]
        exposure[name] = np.bincount(decile[items], minlength=11)[1:] / max(len(items), 1)
        rows = np.repeat(np.arange(recs.shape[0]), recs.shape[1])[recs.ravel() >= 0]
        rec_keys = rows * len(pop) + recs.ravel()[recs.ravel() >= 0]
        hit = np.isin(truth.row.astype(np.int64) * len(pop) + truth.col, rec_keys)
        recall[name] = {seg: float(hit[segment[truth.col] == seg].mean()) if (segment[truth.col] == seg).any()
                        else float("nan") for seg in (S.HEAD, S.TAIL, S.COLD)}
    return (pd.DataFrame(exposure, index=pd.RangeIndex(1, 11, name="decile")),
            pd.DataFrame(recall).T)


def bar_plot(frame: pd.DataFrame, title: str, ylabel: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8))
    frame.plot.bar(ax=ax, width=0.85)
    ax.set(title=title, ylabel=ylabel)
    ax.legend(fontsize=7, ncol=3)
    data = _png(fig)
    plt.close(fig)
    return data


def selection_section(selection: dict | None) -> list[str]:
    """report.md lines: every final-stage option's valid metrics at its tail_weight, and the choice."""
    if not selection:
        return []
    rows = [f"| {name} | {o['tail_weight']} | {o['ndcg@10']:.4f} | {o['tail_recall@10']:.4f} | "
            f"{'yes' if o['meets_floor'] else 'no'} |" for name, o in selection["options"].items()]
    return ["## Final stage: chosen on the valid window (held-out fit-phase users)", "",
            f"Chosen: **{selection['scorer']}** at tail_weight {selection['tail_weight']} — {selection['reason']}. "
            f"Tail floor (2× ItemKNN) {selection['floor_tail_recall@10']:.4f}; {selection['holdout_users']} users.",
            "", "| option | tail_weight | NDCG@10 | TailRecall@10 | meets floor |", "|---|---|---|---|---|", *rows, ""]


def write_report(ctx, metrics: dict[str, Any], system_lists: dict[str, pd.DataFrame],
                 extra_sections: list[str] | None = None) -> None:
    """Write report.md and its plots into the run folder."""
    phase = ctx.phase("eval")
    candidates = ctx.candidates("eval")
    k = 10
    lists = baseline_lists(candidates, ctx.config.eval.baselines) | system_lists
    exposure, segment_recall = exposure_and_segment_recall(phase, lists, k)
    ctx.store.write_bytes("plots/popularity_curve.png", popularity_plot(phase))
    ctx.store.write_bytes("plots/exposure_by_decile.png",
                          bar_plot(exposure, f"Share of top-{k} slots by popularity decile (1 = most popular)",
                                   "share of slots"))
    ctx.store.write_bytes("plots/recall_by_segment.png",
                          bar_plot(segment_recall, f"Recall@{k} by item segment (micro over test pairs)", "recall"))
    info = metrics["info"]
    recall_rows = [f"| {src} | {v['recall']:.4f} | {v['tail_recall']:.4f} | {v['candidates_per_user']:.1f} |"
                   for src, v in metrics["candidate_recall"].items()]
    sections = [
        f"# ray_longtail report: run `{ctx.store.run_id}`", "",
        f"Catalog {info['catalog']} items (head {info['head']}, tail {info['tail']}, cold {info['cold']}); "
        f"{info['eval_users']} evaluated users in the test window; final list: {info['final_list']}.", "",
        "## Quality (test window)", "", "```", metrics_table(metrics["systems"], 10), "",
        metrics_table(metrics["systems"], 20), "```", "",
        *selection_section(metrics.get("selection")),
        "## Candidate recall (share of test items present in the candidates)", "",
        "| source | recall | tail recall | candidates/user |", "|---|---|---|---|", *recall_rows, "",
        "## Long-tail discovery: largest tail-heavy clusters", "", "```",
        discovery_summary(ctx.table("clusters.parquet")), "```", "",
        "## Plots", "", "![popularity](plots/popularity_curve.png)", "",
        "![exposure](plots/exposure_by_decile.png)", "", "![recall by segment](plots/recall_by_segment.png)", "",
        "Recall@10 by segment:", "", "```", segment_recall.round(4).to_string(), "```", "",
        *(extra_sections or []),
    ]
    ctx.store.write_text("report.md", "\n".join(sections))
