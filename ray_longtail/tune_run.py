"""`ray-longtail tune` over a run: the pipeline up to the features, the trial data read from that run (the rank
stage's folds, train / holdout split and cross-fitting groups, and the tail floor), the search (`tune.search`), and
its results written to `<run>/tune/`."""

from __future__ import annotations

import logging

from ray_longtail import tune
from ray_longtail.config import Config, config_to_dict
from ray_longtail.pipeline import RunContext, run_stages
from ray_longtail.runtime import ray_session

log = logging.getLogger(__name__)


def run_tune(config: Config, num_samples: int | None = None) -> str:
    """`ray-longtail tune`: run the pipeline up to the features, search on the valid window (`tune.search`),
    write `<run>/tune/{results.csv,best.yaml,best.json}` and return best.yaml's path."""
    import yaml

    with ray_session(config.ray):
        store = run_stages(config, until="features")
        data = trial_data(RunContext(config, store))
        results = tune.search(data, num_samples or config.tune.num_samples)
    floor = data.floor
    if results.errors:
        log.warning("%d trials failed: %s", len(results.errors), results.errors[0])
    table = results.get_dataframe()
    best = results.get_best_result(metric="objective", mode="max")
    columns = [c for c in table.columns if c.startswith("config/")] + list(tune.TRIAL_METRICS)
    ordered = table[columns].sort_values("objective", ascending=False)
    store.write_text("tune/results.csv", ordered.to_csv(index=False))
    resolved = config_to_dict(tune.trial_config(config, best.config))
    resolved.pop("run_id")
    store.write_text("tune/best.yaml", "# best trial of `ray-longtail tune` (valid window only)\n"
                     + yaml.safe_dump(resolved, sort_keys=False))
    store.write_json("tune/best.json", {"params": best.config,
                                        "metrics": {k: best.metrics[k] for k in tune.TRIAL_METRICS},
                                        "floor_tail_recall@10": floor, "trials": int(len(table))})
    print(ordered.to_string(index=False))
    return store.path("tune/best.yaml")


def trial_data(ctx: RunContext) -> tune.TrialData:
    """What every `tune` trial reads, from a run whose features exist: the labelled folds with the rank stage's
    train / holdout split and cross-fitting groups, and the tail floor on their selection users."""
    from ray_longtail.choose import restrict_phase, tail_floor
    from ray_longtail.crossfit import selection_users
    from ray_longtail.ranking_stages import holdout_users, selection_folds

    splits = {name: holdout_users(ctx, name, fold) for fold, name in enumerate(ctx.fold_names())}
    folds = [tune.TrialFold(phase=ctx.phase(name), candidates=ctx.candidates(name), train_users=train,
                       holdout_users=holdout, groups=groups)
             for name, (_, train, holdout, groups) in selection_folds(ctx, splits).items()]
    floor, _ = tail_floor([(restrict_phase(f.phase, selection_users(f.holdout_users, f.groups)), f.candidates)
                           for f in folds], ctx.config)
    return tune.TrialData(config=ctx.config, catalog=ctx.feature_catalog(), folds=tuple(folds), floor=floor)
