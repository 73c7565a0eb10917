"""One ranker against averages of several (`rank.ensemble_size`), on a finished run's stored features.

    python bench/ranker_ensemble.py --run ARTIFACTS/RUN_ID [--seeds 9] [--size 3] [--set key=value ...]

Refits the rank stage's ranker in this process (`rank.train_ranker_local`: the same labelled folds, held-out users
and early stopping as the stage, one member per seed 0 .. seeds-1), scores the run's test-window candidates with
each, and prints test NDCG@10 / TailRecall@10 at tail_weight 0 and at the run's chosen tail_weight (its
`selection.json`) for every single ranker and for the average of each run of `--size` consecutive seeds (the
mean of their scores: what `average_boosters` builds from those members, to float32 rounding), then the mean and
standard deviation of both groups. Pass the run's own `--set` overrides (e.g. the split) so its phases load as
written. Quality only; the timings are one fit each, for orientation.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from ray_longtail import ranking_stages, scoring
from ray_longtail.artifacts import FEATURE_NAMES, SELECTION, RunStore
from ray_longtail.config import load_config, replace
from ray_longtail.evaluate import system_metrics
from ray_longtail.pipeline import RunContext
from ray_longtail.rank import predict, train_ranker_local

METRICS = ("ndcg@10", "tail_recall@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished run's folder (ARTIFACTS/RUN_ID)")
    parser.add_argument("--seeds", type=int, default=9)
    parser.add_argument("--size", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    run = Path(args.run)
    config = load_config(overrides=[f"artifacts={run.parent}", f"run_id={run.name}", *args.overrides])
    ctx = RunContext(config, RunStore(str(run.parent), run.name))
    tail_weight = float(ctx.store.read_json(SELECTION)["selected"])
    names = ctx.store.read_json(FEATURE_NAMES)
    folds = [(ctx.features(name), *ranking_stages.holdout_users(ctx, name, fold))
             for fold, name in enumerate(ctx.fold_names())]
    train, valid = scoring.fold_queries(folds, config.rank.tail_positive_grade)
    phase, features = ctx.phase("eval"), ctx.features("eval")
    single = replace(config, **{"rank.ensemble_size": 1}).rank

    def evaluate(scores: np.ndarray) -> list[dict[str, float]]:
        ranked = ranking_stages.ranked_rows(ctx, "eval", features, scores)
        return [system_metrics(phase, scoring.phase_lists(phase, ranked, weight, config), [10])
                for weight in (0.0, tail_weight)]

    scores = []
    for seed in range(args.seeds):
        start = time.perf_counter()
        booster = train_ranker_local(train, valid, names, single, seed=seed)
        scores.append(predict(booster, features, names))
        print(f"seed {seed}: {booster.num_boosted_rounds()} rounds, {time.perf_counter() - start:.1f} s", flush=True)
    groups = {"single": [evaluate(s) for s in scores],
              f"average of {args.size}": [evaluate(np.mean(scores[i:i + args.size], axis=0))
                                          for i in range(0, args.seeds - args.size + 1, args.size)]}
    print(f"\n{run.name}: test window, NDCG@10 / TailRecall@10 at tail_weight 0 and {tail_weight} (the run's)")
    for name, rows in groups.items():
        for row in rows:
            print(f"{name:<14}", "   ".join(" / ".join(f"{m[key]:.4f}" for key in METRICS) for m in row))
    for name, rows in groups.items():
        cells = []
        for at in range(2):
            values = {key: [row[at][key] for row in rows] for key in METRICS}
            sd = statistics.pstdev(values["ndcg@10"]) if len(rows) > 1 else float("nan")
            cells.append(" / ".join(f"{np.mean(values[key]):.4f}" for key in METRICS) + f" (sd {sd:.4f})")
        print(f"{name + ' mean':<20}", "   ".join(cells))


if __name__ == "__main__":
    main()
