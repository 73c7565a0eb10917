"""Report: what a run's report says (`report_sections`): the quality tables, the tail_weight trade-off (table and
plot), the final-stage choice, candidate recall, ranker feature importance, tail-heavy clusters, the popularity
curve, exposure by popularity decile and recall by segment; rendered as `report.md` (+ plots/*.png) and as one
self-contained `report.html` (`report_render.py`); and `print_summary`, what a CLI command prints after it
runs (stage timings, the tail-heavy clusters, the metrics tables)."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd

from ray_longtail.artifacts import RunStore
from ray_longtail.data import schema as S
from ray_longtail.discover import discovery_summary
from ray_longtail.evaluate import baseline_lists, metrics_table, rec_matrix
from ray_longtail.phase import Phase
from ray_longtail.report_render import Section, render_html, render_markdown


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


def tradeoff_plot(tradeoff: dict[str, dict[str, float]], chosen: float, systems: dict[str, dict]) -> bytes:
    """NDCG@10 against TailRecall@10 and against Coverage@10 along the tail_weight curve, baselines as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weights = sorted(tradeoff, key=float)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("tail_recall@10", "coverage@10"), strict=True):
        xs, ys = [tradeoff[w][metric] for w in weights], [tradeoff[w]["ndcg@10"] for w in weights]
        ax.plot(xs, ys, marker="o", label="system over tail_weight")
        for w, x, y in zip(weights, xs, ys, strict=True):
            ax.annotate(w, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points",
                        fontweight="bold" if float(w) == chosen else "normal")
        for name, values in systems.items():
            if name[:1].isupper() and metric in values:
                ax.scatter(values[metric], values["ndcg@10"], marker="x")
                ax.annotate(name, (values[metric], values["ndcg@10"]), fontsize=7, xytext=(3, -9),
                            textcoords="offset points")
        ax.set(xlabel=metric, ylabel="ndcg@10", title=f"NDCG@10 vs {metric} (bold: chosen weight)")
    data = _png(fig)
    plt.close(fig)
    return data


def importance_plot(importance: dict[str, float], top: int = 20) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(importance.items(), key=lambda kv: -kv[1])[:top][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(items) + 1))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set(xlabel="gain", title=f"Ranker feature importance (top {len(items)} by gain)")
    data = _png(fig)
    plt.close(fig)
    return data


def systems_table(systems: dict[str, dict[str, float]], k: int) -> pd.DataFrame:
    frame = pd.DataFrame(systems).T
    frame = frame[[c for c in frame.columns if c.endswith(f"@{k}")]]
    frame.index.name = "system"
    return frame


def selection_section(selection: dict | None) -> list[Section]:
    """Every final-stage option's valid metrics at its tail_weight, and the choice."""
    if not selection:
        return []
    options = pd.DataFrame(selection["options"]).T[["tail_weight", "ndcg@10", "tail_recall@10", "meets_floor"]]
    options["meets_floor"] = options["meets_floor"].map({True: "yes", False: "no"})
    options.index.name = "option"
    groups = selection.get("crossfit_groups", 0)
    users = f"{selection['selection_users']} users" + (
        f" (the held-out ones and {groups} cross-fitted groups: each user's ranker scores come from a ranker fit "
        "without them)" if groups else " (the ranker's held-out ones)")
    return [Section("Final stage: chosen on the valid window (labelled fit-phase users)",
                    f"Chosen: {selection['scorer']} at tail_weight {selection['tail_weight']}: {selection['reason']}. "
                    f"Tail floor (2x ItemKNN) {selection['floor_tail_recall@10']:.4f}; {users}.{lead_text(selection)}",
                    [options], highlight=(selection["scorer"],))]


def lead_text(selection: dict) -> str:
    """What the chosen scorer's lead over the best single source was and how much of it the tail could spend."""
    if "lead_confidence" not in selection:  # runs from before the lead's bound was recorded
        return ""
    error = (f"standard error {selection['lead_error']:.4f} over {selection['lead_users']} paired users"
             if selection["lead_users"] else "no per-user standard error for this objective")
    spent = ("the measured lead" if selection["lead_confidence"] == 0.5 else
             f"its one-sided {selection['lead_confidence']:.0%} lower bound {selection['lead_bound']:.4f}")
    return (f" Its lead over the best single source ({selection['best_single_source_name']} at tail_weight 0) "
            f"{selection['lead']:+.4f}, {error}; the tail is paid from {spent}: the accuracy budget is measured from "
            f"{selection['budget_reference']:.4f}.")


def enrichment_section(enrichment: dict | None) -> list[Section]:
    """Catalog enrichment's cross-validated quality against the majority class (`enrich.py`), or why it did not run."""
    if not enrichment:
        return []
    if "cv" not in enrichment:
        return [Section("Catalog enrichment (categories)", f"Not run: {enrichment.get('skipped')} "
                        f"({enrichment['labelled']} items with a category, {enrichment['empty']} without).")]
    cv = enrichment["cv"]
    table = pd.DataFrame({"accuracy": [cv["accuracy"], cv["majority_accuracy"]],
                          "macro_f1": [cv["macro_f1"], cv["majority_macro_f1"]]},
                         index=pd.Index(["classifier (embeddings without the category text)", "majority class"],
                                        name=f"{cv['folds']}-fold cross-validation"))
    return [Section("Catalog enrichment (categories)",
                    f"{enrichment['empty']} items had no category; {enrichment['inferred']} got one predicted with "
                    f"confidence >= {enrichment['min_confidence']} (used by the category feature, marked "
                    f"`inferred` in item_segments.parquet). Trained on {cv['items']} labelled items in "
                    f"{cv['classes']} categories.", [table])]


def report_sections(ctx, metrics: dict[str, Any], system_lists: dict[str, pd.DataFrame]) -> list[Section]:
    """What the report says, in order (rendered as report.md and report.html)."""
    phase, k = ctx.phase("eval"), 10
    lists = baseline_lists(ctx.candidates("eval"), ctx.config.eval.baselines) | system_lists
    exposure, segment_recall = exposure_and_segment_recall(phase, lists, k)
    info, selection = metrics["info"], metrics.get("selection") or {}
    chosen = float(info.get("tail_weight", selection.get("tail_weight", 0.0)))
    tradeoff = pd.DataFrame(metrics["tradeoff"]).T
    tradeoff.index.name = "tail_weight"
    recall = pd.DataFrame(metrics["candidate_recall"]).T
    recall.index.name = "source"
    sections = [
        Section("Summary", f"Catalog {info['catalog']} items (head {info['head']}, tail {info['tail']}, cold "
                           f"{info['cold']}); {info['eval_users']} evaluated users in the test window; final list: "
                           f"{info['final_list']}."),
        Section("Quality (test window)", "", [systems_table(metrics["systems"], 10),
                                              systems_table(metrics["systems"], 20)],
                highlight=("system", "system_tw0")),
        Section("Trade-off over tail_weight (test window)", "The final system at every evaluated tail_weight; "
                "baselines as points.", [tradeoff], highlight=(str(chosen),),
                plots=[("plots/tradeoff.png", tradeoff_plot(metrics["tradeoff"], chosen, metrics["systems"]))]),
        *selection_section(selection),
        Section("Candidate recall (share of test items present in the candidates)", "", [recall]),
    ]
    if ctx.store.exists("ranker/importance.json"):
        importance = ctx.store.read_json("ranker/importance.json")
        sections.append(Section("Ranker feature importance", "Total gain per feature in the XGBoost ranker.",
                                plots=[("plots/feature_importance.png", importance_plot(importance))]))
    sections += enrichment_section(ctx.store.read_json("enrichment.json") if ctx.store.exists("enrichment.json")
                                   else None)
    sections += [
        Section("Long-tail discovery: largest tail-heavy clusters",
                pre=discovery_summary(ctx.table("clusters.parquet"))),
        Section("Popularity and exposure", plots=[
            ("plots/popularity_curve.png", popularity_plot(phase)),
            ("plots/exposure_by_decile.png", bar_plot(exposure, f"Share of top-{k} slots by popularity decile "
                                                                 "(1 = most popular)", "share of slots"))]),
        Section(f"Recall@{k} by item segment (micro over test pairs)", "", [segment_recall],
                plots=[("plots/recall_by_segment.png", bar_plot(segment_recall, f"Recall@{k} by item segment",
                                                                "recall"))]),
    ]
    return sections


def write_report(ctx, metrics: dict[str, Any], system_lists: dict[str, pd.DataFrame]) -> None:
    """Write the plots, report.md and the self-contained report.html into the run folder."""
    sections = report_sections(ctx, metrics, system_lists)
    for section in sections:
        for path, png in section.plots:
            ctx.store.write_bytes(path, png)
    title = f"ray_longtail report: run {ctx.store.run_id}"
    ctx.store.write_text("report.md", render_markdown(title, sections))
    ctx.store.write_text("report.html", render_html(title, sections))


def print_summary(store: RunStore, command: str) -> None:
    """Print what a person wants to see after a command: stage timings, and the metrics table if there is one."""
    manifest = store.manifest()
    for name, info in manifest.get("stages", {}).items():
        print(f"{name:<10} {info['seconds']:>8.1f}s  {json.dumps(info['summary'], default=str)[:160]}")
    if command in ("discover", "run") and store.exists("clusters.parquet"):
        print("\nLargest tail-heavy clusters (long-tail discovery):")
        print(discovery_summary(store.read_table("clusters.parquet")))
    if command in ("evaluate", "run") and store.exists("metrics.json"):
        metrics = store.read_json("metrics.json")
        print(f"\nTest window: {metrics['info']['eval_users']} users, catalog {metrics['info']['catalog']} "
              f"items (head {metrics['info']['head']}, tail {metrics['info']['tail']}, cold {metrics['info']['cold']})")
        for k in metric_cutoffs(metrics):
            print(metrics_table(metrics["systems"], k=k))


def metric_cutoffs(metrics: dict) -> list[int]:
    """The cut-offs present in a metrics.json (e.g. [10, 20])."""
    first = next(iter(metrics["systems"].values()))
    return sorted({int(key.split("@")[1]) for key in first if "@" in key})
