"""The final choice on the valid window, once, for `run` and `tune`: the users it rests on (the seeded held-out split,
the phases restricted to the selection users), the scorer (each single source, the blend, the ranker) and its
tail_weight, from the trade-off curves of the scoring chain's lists (`scoring.py`) on the selection users of every
labelled fold, pooled; the tail floor (a multiple of ItemKNN's tail recall); the chosen scorer's lead over the best
single source with its standard error; and the final (scorer, tail_weight) of a run's lists and its evaluation (the
Serve app reads it from the run's `metrics.json` → `info`).

Pure functions over `Phase`s, `RankedCandidates` and the config: no `RunContext`, no file I/O, no Ray.
"""

from __future__ import annotations

from dataclasses import replace
from statistics import NormalDist

import numpy as np
import pandas as pd

from ray_longtail.config import Config
from ray_longtail.evaluate import rec_matrix, system_metrics
from ray_longtail.metrics import USER_METRICS, user_accuracy
from ray_longtail.phase import Phase
from ray_longtail.scoring import RankedCandidates, rerank_lists

CURVE_METRICS = ("ndcg@10", "tail_recall@10", "coverage@10", "aplt@10")


def holdout_split(users: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of user indices into (train users, holdout users)."""
    rng = np.random.default_rng(seed)
    holdout = rng.random(len(users)) < share
    return users[~holdout], users[holdout]


def restrict_phase(phase: Phase, users: np.ndarray) -> Phase:
    """The phase evaluated on the given users only (those of them with ground truth)."""
    keep = np.isin(phase.users, users)
    return replace(phase, users=phase.users[keep], truth=phase.truth[keep])


def constrained_objective(metrics: dict[str, float], floor: float, objective: str = "ndcg@10") -> float:
    """Maximise `objective` subject to TailRecall@10 >= floor: feasible lists score their objective, infeasible
    ones score below every feasible one, closer to feasibility scoring higher."""
    if metrics["tail_recall@10"] >= floor:
        return float(metrics[objective])
    return -1.0 + float(metrics["tail_recall@10"]) / max(floor, 1e-12)


def pooled_metrics(parts: list[tuple[Phase, pd.DataFrame]], ks: list[int]) -> dict[str, float]:
    """`system_metrics` over several held-out phases (one per labelled fold), each metric the mean over the parts
    weighted by their evaluated users (tail / cold recall by their tail / cold users): more users behind every
    choice made on valid than the newest fold alone has."""
    results = [system_metrics(phase, lists, ks) for phase, lists in parts]
    counts = ("users", "tail_users", "cold_users")
    out: dict[str, float] = {key: int(sum(r[key] for r in results)) for key in counts}
    for key in results[0]:
        if key in counts:
            continue
        by = "tail_users" if key.startswith("tail_recall") else "cold_users" if key.startswith("cold_recall") \
            else "users"
        total = sum(r[by] for r in results)
        out[key] = float(sum(r[key] * r[by] for r in results) / total) if total else 0.0
    return out


def tail_floor(parts: list[tuple[Phase, pd.DataFrame]], config: Config) -> tuple[float, dict[str, float]]:
    """The TailRecall@10 floor (ratio x ItemKNN's on the held-out phases, with their candidates) and ItemKNN's
    pooled metrics there."""
    itemknn = pooled_metrics([(phase, c[c["source"] == "itemknn"]) for phase, c in parts], config.eval.ks)
    return config.tune.tail_recall_floor_ratio * itemknn["tail_recall@10"], itemknn


def selection_ks(config: Config) -> list[int]:
    """The cut-offs the final-stage choice reads: 10 (the curve metrics, the tail floor) and the objective's. The
    re-ranker is greedy and step-synchronous, so a list's first k items (and the exposure they saw) are the same
    whatever its length: lists cut there give the choice exactly what the longest evaluated lists would."""
    return sorted({10, int(config.tune.objective.rsplit("@", 1)[1])})


def tradeoff_curve(parts: list[tuple[Phase, RankedCandidates]], config: Config, floor: float,
                   weights: list[float] | None = None) -> dict[str, dict[str, float]]:
    """Per tail_weight (default `eval.tail_weights`): the pooled curve metrics over the selection phases and the
    constrained objective."""
    curve, ks = {}, selection_ks(config)
    for weight in config.eval.tail_weights if weights is None else weights:
        metrics = pooled_metrics([(phase, rerank_lists(ranked, max(ks), weight, config, phase.is_tail,
                                                       phase.context.vectors)) for phase, ranked in parts], ks)
        curve[str(weight)] = {key: metrics[key] for key in (*CURVE_METRICS, config.tune.objective)}
        curve[str(weight)]["objective"] = constrained_objective(metrics, floor, config.tune.objective)
    return curve


def choose_tail_weight(curve: dict[str, dict[str, float]], weights: list[float], floor: float, tolerance: float,
                       metric: str = "ndcg@10", reference: float | None = None,
                       tail_tolerance: float = 0.0) -> tuple[float, bool, str]:
    """(weight, meets_floor, reason). Within the accuracy budget (`metric` >= (1 - tolerance) x `reference`,
    default: the best weight's), the weight with the most TailRecall@10: it meets the floor whenever any weight
    within budget does; when none does, it is the best trade-off the budget allows, and `reason` says so. Small
    differences are within noise on a few hundred users on both axes: "best accuracy" alone would pick at random
    among the weights within the budget, and weights whose TailRecall@10 is within `tail_tolerance` (relative) of
    that most (and meet the floor when it does) are ties, won by the most accurate (then the smallest) weight."""
    reference = max(curve[str(w)][metric] for w in weights) if reference is None else reference
    budget = [w for w in weights if curve[str(w)][metric] >= (1 - tolerance) * reference] or [min(weights)]

    def tail(w: float) -> float:
        return curve[str(w)]["tail_recall@10"]

    def accuracy(w: float) -> tuple[float, float]:
        return curve[str(w)][metric], -w

    most = max(tail(w) for w in budget)
    plain = max((w for w in budget if tail(w) == most), key=accuracy)
    near = [w for w in budget if tail(w) >= (1 - tail_tolerance) * most and (tail(w) >= floor or most < floor)]
    chosen = max(near, key=accuracy)
    meets = tail(chosen) >= floor
    within = f"{metric} >= {1 - tolerance:.2f} x {reference:.4f}"
    if meets:
        reason = f"the most tail recall with {within}; meets the floor {floor:.4f}"
    else:
        reason = (f"the tail floor {floor:.4f} is out of reach with {within} (best reachable TailRecall@10 "
                  f"{most:.4f}): the most tail recall the accuracy budget allows")
    if chosen != plain:
        reason += (f"; TailRecall@10 {tail(chosen):.4f} here is within {tail_tolerance:.0%} of the most, {most:.4f} "
                   f"at {plain}: a tie, won by the more accurate weight")
    return float(chosen), bool(meets), reason


def select_tail_weight(parts: list[tuple[Phase, RankedCandidates]], config: Config, floor: float) -> dict:
    """The trade-off curve of one scorer's lists on the selection users and the weight `choose_tail_weight`
    picks within the scorer's own accuracy budget, with the metrics there."""
    curve = tradeoff_curve(parts, config, floor)
    weight, meets, reason = choose_tail_weight(curve, config.eval.tail_weights, floor, config.rerank.ndcg_tolerance,
                                               config.tune.objective, tail_tolerance=config.rerank.tail_tolerance)
    return {"tail_weight": weight, "meets_floor": meets, "reason": reason, **curve[str(weight)], "curve": curve}


def lead_error(chosen: list[tuple[Phase, RankedCandidates]], weight: float,
               single: list[tuple[Phase, RankedCandidates]], config: Config) -> tuple[float, int]:
    """(standard error, paired users) of the lead of the chosen scorer at `weight` over the best single source at
    tail_weight 0 on the objective: the paired per-user differences over the selection users of every fold (the
    lead itself is the pooled curves' difference, their mean). Objectives that are not means of a per-user value
    (coverage, tail recall, ...) have no standard error here: (0.0, 0)."""
    metric, cutoff = config.tune.objective.rsplit("@", 1)
    k = int(cutoff)
    if metric not in USER_METRICS:
        return 0.0, 0
    diffs = []
    for (phase, ranked), (single_phase, single_ranked) in zip(chosen, single, strict=True):
        if single_phase is not phase:
            raise ValueError("a lead is measured between options scored on the same selection phases")
        a, b = (user_accuracy(rec_matrix(phase.users, rerank_lists(r, k, w, config, phase.is_tail,
                                                                   phase.context.vectors), k), phase.truth, metric, k)
                for r, w in ((ranked, weight), (single_ranked, 0.0)))
        diffs.append(a - b)
    diff = np.concatenate(diffs)
    return (float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0), int(diff.size)


def lead_bound(lead: float, error: float, config: Config) -> float:
    """The one-sided `rerank.surplus_confidence` lower bound of a lead with this standard error, never below 0: a
    lead measured on a few hundred users is noisy, and the bound is what the tail may be paid from."""
    return max(lead - NormalDist().inv_cdf(config.rerank.surplus_confidence) * error, 0.0)


def select_final(options: dict[str, list[tuple[Phase, RankedCandidates]]],
                 floor_parts: list[tuple[Phase, pd.DataFrame]], config: Config) -> dict:
    """The final scorer and tail_weight, chosen on the fit-phase selection users (held-out and cross-fitted,
    `crossfit.py`) with the run's objective (max
    `tune.objective` subject to TailRecall@10 >= the floor): every option (each single source, the blend, the
    ranker; `options` ordered simplest first) gets its own tail_weight within its own accuracy budget; among the
    options within `rerank.ndcg_tolerance` of the most accurate one, the best that meets the floor wins, or the
    best by accuracy when none does (a tail source that meets the floor at a third of the accuracy never wins);
    ties go to the simpler option, so the ranker must earn its place. The winner's tail_weight is then chosen
    again with the accuracy budget measured from below its own best: from its best minus `rerank.surplus_share`
    of what it gains over the best single source at tail_weight 0 (0 keeps the winner's own budget, 1 spends all
    of it). `rerank.surplus_confidence` above 0.5 spends from the lead's lower confidence bound instead
    (`lead_bound`, its standard error from the paired per-user differences): a lead measured on few users then
    buys less tail; the default 0.5 spends from the measured lead (README "tail_weight" says why)."""
    floor, itemknn = tail_floor(floor_parts, config)
    metric = config.tune.objective
    results = {name: select_tail_weight(parts, config, floor) for name, parts in options.items()}
    top = max(result[metric] for result in results.values())
    eligible = [name for name in results if results[name][metric] >= (1 - config.rerank.ndcg_tolerance) * top]
    chosen = max(eligible, key=lambda name: (results[name]["meets_floor"], results[name][metric],
                                             -list(results).index(name)))
    sources = [name for name in config.retrieve.sources if name in results]
    single = max(sources, key=lambda name: results[name]["curve"]["0.0"][metric])
    curve = results[chosen]["curve"]
    best = max(config.eval.tail_weights, key=lambda w: curve[str(w)][metric])
    lead = curve[str(best)][metric] - results[single]["curve"]["0.0"][metric]
    error, paired = lead_error(options[chosen], best, options[single], config)
    bound = lead_bound(lead, error, config)
    reference = curve[str(best)][metric] - config.rerank.surplus_share * bound
    weight, _, reason = choose_tail_weight(curve, config.eval.tail_weights, floor, config.rerank.ndcg_tolerance,
                                           metric, reference, config.rerank.tail_tolerance)
    return {"scorer": chosen, "selected": weight, "reason": reason, "floor_tail_recall@10": floor,
            "itemknn": itemknn, "selection_users": int(sum(len(phase.users) for phase, _ in floor_parts)),
            "options": results, "best_single_source": results[single]["curve"]["0.0"][metric],
            "best_single_source_name": single, "lead": lead, "lead_error": error, "lead_bound": bound,
            "lead_users": paired, "lead_confidence": config.rerank.surplus_confidence, "budget_reference": reference}


def final_choice(config: Config, selection: dict | None) -> tuple[str, float]:
    """(scorer name, tail_weight) of the final lists: the valid-window choice (`rerank.select_on_valid`, from
    `select_final`), else the ranker (the blend when `rank.enabled` is false) at `rerank.tail_weight`."""
    if config.rerank.select_on_valid and selection is not None:
        return selection["scorer"], float(selection["selected"])
    return ("ranker" if config.rank.enabled else "blend"), config.rerank.tail_weight
