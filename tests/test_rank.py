"""Features, Ray Train ranker, rerank and tune on the artifacts of the session's pipeline run (real slice)."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
import xgboost
from conftest import cli

from ray_longtail.artifacts import FEATURE_NAMES, RunStore
from ray_longtail.choose import holdout_split, restrict_phase
from ray_longtail.config import RankConfig, load_config
from ray_longtail.data import schema as S
from ray_longtail.evaluate import system_metrics
from ray_longtail.features import FeatureBuilder, attach_labels
from ray_longtail.phase import build_phase, read_item_clusters
from ray_longtail.pipeline import RunContext
from ray_longtail.rank import member_rounds, predict, shard_queries, train_ranker
from ray_longtail.rerank import candidate_matrix, rerank, tail_appetite
from ray_longtail.scoring import training_queries


@pytest.fixture(scope="module")
def run_ctx(pipeline_run):
    args, _, run_dir = pipeline_run
    items, events = args[2], args[4]
    config = load_config(extra={"data": {"items": items, "interactions": events},
                                "artifacts": str(run_dir.parent), "run_id": run_dir.name})
    return RunContext(config, RunStore(str(run_dir.parent), run_dir.name))


def test_features_never_see_the_label_window(run_ctx):
    """Plant an item that exists only in the label window; features must not know it was bought, and must be
    identical whatever the label window holds."""
    ctx = run_ctx
    train, valid = ctx.table("split/train.parquet"), ctx.table("split/valid.parquet")
    catalog = ctx.table("catalog.parquet")
    never_in_train = sorted(set(catalog[S.ITEM_ID]) - set(train[S.ITEM_ID]))[0]
    user = train[S.USER_ID].iloc[0]
    planted = pd.DataFrame({S.USER_ID: [user] * 3 + ["someone"], S.ITEM_ID: [never_in_train] * 4,
                            S.TIMESTAMP: [int(valid[S.TIMESTAMP].max())] * 4, S.EVENT: "purchase", S.VALUE: 1.0})
    cuts = ctx.cuts()
    ids, vectors = catalog[S.ITEM_ID].to_numpy(), ctx.vectors()
    clusters = read_item_clusters(ctx.store, len(ids))
    frames = []
    for labels in (pd.concat([valid, planted]), valid.iloc[:10]):
        phase = build_phase("fit", train, labels, cuts.cut_valid, ids, vectors, clusters, ctx.config)
        builder = FeatureBuilder(["content"], 20).fit(phase.history, phase.context, catalog,
                                                      np.zeros(len(ids), dtype=np.float32))
        u = int(phase.history.user_index([user])[0])
        item = int(pd.Index(ids).get_indexer([never_in_train])[0])
        wide = pd.DataFrame({"user": [u, u], "item": [item, 0], "score_content": [0.5, 0.1],
                             "rank_content": [1, 2]})
        frames.append((builder.transform(wide), phase))
    (first, phase_with), (second, _) = frames
    pd.testing.assert_frame_equal(first, second)
    row = first.iloc[0]
    assert row["log_pop"] == 0 and row["is_cold"] == 1 and np.isnan(row["item_age_days"])
    labelled = attach_labels(first, phase_with.users, phase_with.truth)
    assert labelled["label"].tolist() == [1.0, 0.0]


def test_shard_queries_keeps_groups_whole_and_sorted():
    frame = pd.DataFrame({"qid": np.random.default_rng(0).integers(0, 50, 1000), "x": np.arange(1000)})
    shards = [shard_queries(frame, r, 3) for r in range(3)]
    qids = [set(s["qid"]) for s in shards]
    assert not (qids[0] & qids[1]) and not (qids[1] & qids[2]) and not (qids[0] & qids[2])
    assert sum(len(s) for s in shards) == len(frame)
    assert all(s["qid"].is_monotonic_increasing for s in shards)


class KillOnce(xgboost.callback.TrainingCallback):
    """Fault drill: rank 0 kills its own process at round `at_round` of the ensemble's member `member` (0-based),
    once (a marker file remembers it), and appends the round each member's fit starts from to `<marker>.starts`."""

    def __init__(self, member: int, at_round: int, marker: str):
        super().__init__()
        self.member, self.at_round, self.marker = member, at_round, marker
        self.started = 0

    def before_training(self, model):
        import ray.train

        self.started += 1
        if ray.train.get_context().get_world_rank() == 0:
            with open(f"{self.marker}.starts", "a") as starts:
                starts.write(f"{model.num_boosted_rounds()}\n")
        return model

    def after_iteration(self, model, epoch, evals_log) -> bool:
        import os
        import signal

        import ray.train

        if (self.started == self.member + 1 and model.num_boosted_rounds() == self.at_round
                and ray.train.get_context().get_world_rank() == 0 and not os.path.exists(self.marker)):
            open(self.marker, "w").close()
            ray.train.get_all_reported_checkpoints(timeout_s=60)  # wait until the controller has the last one
            os.kill(os.getpid(), signal.SIGKILL)
        return False


@pytest.fixture(scope="module")
def trained(run_ctx, tmp_path_factory):
    """A 2-member ranker trained on Ray Train with 2 workers; rank 0 is killed once at round 30 of the second
    member, after its checkpoint at round 25 (FailureConfig: the restarted workers keep the finished first member
    and resume the second)."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    features = run_ctx.features("fit")
    names = run_ctx.store.read_json(FEATURE_NAMES)
    train_users, holdout_users = holdout_split(np.unique(features["user"]), 0.3, seed=1)
    train, valid = training_queries(features, train_users, holdout_users)
    marker = tmp_path_factory.mktemp("drill") / "killed"
    config = RankConfig(num_boost_round=40, early_stopping_rounds=0, num_workers=2, cpus_per_worker=0.5,
                        ensemble_size=2)
    booster, info = train_ranker(train, valid, names, config, storage_path=str(tmp_path_factory.mktemp("train")),
                                 max_failures=2, callbacks=[KillOnce(1, 30, str(marker))])
    holdout = features[features["user"].isin(holdout_users)].assign(qid=lambda f: f["user"])
    return booster, info, train, holdout, names, marker


def test_training_survives_a_killed_worker(trained):
    booster, info, *_, marker = trained
    assert marker.exists()  # the drill did kill rank 0
    starts = [int(line) for line in open(f"{marker}.starts").read().split()]
    assert starts == [0, 0, 25]  # the restart kept member 0 and resumed member 1 from its round-25 checkpoint
    assert member_rounds(booster) == [40, 40] and info["member_rounds"] == [40, 40]
    assert booster.num_boosted_rounds() == 80 and info["rounds"] == 80


def test_no_query_group_is_split_across_workers(trained):
    """Workers train on whole, disjoint query groups: rank 0 reports exactly its shard's groups."""
    _, info, train, *_ = trained
    shards = [set(shard_queries(train, rank, 2)[S.QID]) for rank in (0, 1)]
    assert not shards[0] & shards[1] and shards[0] | shards[1] == set(train[S.QID])
    assert info["world_size"] == 2 and info["train_groups"] == len(shards[0])


def test_ray_data_batch_scoring_equals_in_process_scores(trained):
    from ray_longtail.rank import score_on_ray

    booster, _, _, holdout, names, _ = trained
    np.testing.assert_array_equal(score_on_ray(booster, holdout, names, block_rows=500),
                                  predict(booster, holdout, names))


def test_trained_ranker_beats_random_order(trained, run_ctx):
    booster, _, _, holdout, names, _ = trained
    phase = run_ctx.phase("fit")
    keep = np.isin(phase.users, holdout["user"].unique())
    from dataclasses import replace

    holdout_phase = replace(phase, users=phase.users[keep], truth=phase.truth[keep])

    def ndcg(scores):
        scored = pd.DataFrame({"user": holdout["user"].to_numpy(), "item": holdout["item"].to_numpy(),
                               "score": scores})
        users, items, values = candidate_matrix(scored, 50)
        lists = rerank(users, items, values, 10, 0.0, "mmr", vectors=phase.context.vectors)
        return system_metrics(holdout_phase, lists, [10])["ndcg@10"]

    model = ndcg(predict(booster, holdout, names))
    rng = np.random.default_rng(0)
    random = np.mean([ndcg(rng.random(len(holdout))) for _ in range(5)])
    assert model > 1.5 * random


def test_rerank_zero_is_identity_and_one_raises_aplt(run_ctx):
    phase = run_ctx.phase("eval")
    features = run_ctx.features("eval")
    scored = pd.DataFrame({"user": features["user"], "item": features["item"],
                           "score": -features["rank_ease"].to_numpy(float) + 0.01 * features["cos_profile"]})
    users, items, values = candidate_matrix(scored, 50)
    appetite = tail_appetite(phase.history.binary, phase.is_tail, users)
    at_zero = rerank(users, items, values, 10, 0.0, "xquad", is_tail=phase.is_tail, appetite=appetite)
    expected = scored.sort_values(["user", "score", "item"], ascending=[True, False, True])
    expected = expected.groupby("user").head(10)
    assert at_zero["item"].tolist() == expected["item"].tolist()
    mmr_at_zero = rerank(users, items, values, 10, 0.0, "mmr", vectors=phase.context.vectors)
    assert mmr_at_zero["item"].tolist() == expected["item"].tolist()
    aplt = {weight: system_metrics(phase, rerank(users, items, values, 10, weight, "xquad", is_tail=phase.is_tail,
                                                 appetite=appetite), [10])["aplt@10"] for weight in (0.0, 1.0)}
    assert aplt[1.0] > aplt[0.0]
    mmr_at_one = rerank(users, items, values, 10, 1.0, "mmr", vectors=phase.context.vectors)
    assert mmr_at_one["item"].tolist() != expected["item"].tolist()  # the diversity term changes the lists


def test_pipeline_beats_every_collaborative_baseline_on_ndcg(pipeline_run):
    _, _, run_dir = pipeline_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    systems = metrics["systems"]
    assert systems["system_tw0"]["ndcg@10"] > systems["MostPopular"]["ndcg@10"]
    assert systems["system_tw0"]["ndcg@10"] > systems["ItemKNN"]["ndcg@10"]
    assert set(json.loads((run_dir / "ranker" / "importance.json").read_text())) <= set(
        json.loads((run_dir / "feature_names.json").read_text()))
    assert "0.0" in metrics["tradeoff"] and metrics["info"]["tail_weight"] in {
        float(w) for w in metrics["tradeoff"]}


def test_tune_two_trials_writes_a_loadable_best_config(pipeline_run, ray_head):
    args, _, run_dir = pipeline_run
    tuned = cli(["tune", *args[1:], "--num-samples", "2", "--set", "rank.num_boost_round=20"], ray_head)
    assert tuned.returncode == 0, tuned.stderr[-4000:]
    assert "tune: 1/2 trials (50 %)" in tuned.stderr and "tune: 2/2 trials (100 %)" in tuned.stderr  # progress
    best_yaml = run_dir / "tune" / "best.yaml"
    assert tuned.stdout.strip().splitlines()[-1] == str(best_yaml)
    config = load_config(best_yaml)
    best = json.loads((run_dir / "tune" / "best.json").read_text())
    assert config.discover.n_clusters == best["params"]["n_clusters"]
    assert config.rerank.select_on_valid and "tail_weight" not in best["params"]  # the run chooses it on valid
    assert best["metrics"]["tail_weight"] in config.eval.tail_weights
    assert config.rank.tail_positive_grade == best["params"]["tail_positive_grade"]
    assert len((run_dir / "tune" / "results.csv").read_text().strip().splitlines()) == 3


def test_train_job_via_ray_job_submit(pipeline_run, ray_head):
    args, _, run_dir = pipeline_run
    logs = ray_head.submit(["python", "jobs/train_ranker.py", *args[1:], "--force"])
    assert logs.strip().splitlines()[-1] == str(run_dir)
    assert (run_dir / "ranker" / "model.ubj").exists()


def test_a_tune_trial_scores_what_the_rank_stage_selects_on(run_ctx, tmp_path):
    """One config both ways: the rank stage (Ray Train, one worker) and a `tune` trial (in process) train the same
    ranker, choose the same tail_weight for it and score the same valid-window NDCG@10 there."""
    import shutil

    from ray_longtail import ranking_stages
    from ray_longtail.artifacts import SELECTION
    from ray_longtail.config import replace
    from ray_longtail.tune import evaluate_trial
    from ray_longtail.tune_run import trial_data

    shutil.copytree(run_ctx.store.root, tmp_path / "run")
    config = replace(run_ctx.config, **{"rank.num_workers": 1, "artifacts": str(tmp_path), "run_id": "run"})
    ctx = RunContext(config, RunStore(str(tmp_path), "run"))
    ranking_stages.stage_rank(ctx)
    selection = ctx.store.read_json(SELECTION)
    weight = selection["options"]["ranker"]["tail_weight"]
    rank = config.rank
    params = {"n_clusters": config.discover.n_clusters, "n_per_source": config.retrieve.n_per_source,
              "eta": rank.eta, "max_depth": rank.max_depth, "min_child_weight": rank.min_child_weight,
              "subsample": rank.subsample, "num_boost_round": rank.num_boost_round,
              "tail_positive_grade": rank.tail_positive_grade}
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # as in a 1-CPU Tune worker and the stage's Ray Data actors: BLAS on many threads
        trial = evaluate_trial(params, trial_data(ctx))  # here rounds features differently (1e-7)
    curve = selection["options"]["ranker"]["curve"]
    labelled = [np.unique(ctx.features(name)["user"]) for name in ctx.fold_names()]
    assert selection["crossfit_groups"] == config.rank.crossfit_groups  # a small shop: every group joins
    assert selection["selection_users"] == sum(len(restrict_phase(ctx.phase(name), users).users)
                                               for name, users in zip(ctx.fold_names(), labelled, strict=True))
    assert selection["lead_users"] == selection["selection_users"]  # the lead is paired over the same users
    assert selection["lead_error"] > 0 and selection["lead_confidence"] == 0.5  # the default: the measured lead
    assert selection["lead_bound"] == max(selection["lead"], 0)
    best = max(values[config.tune.objective] for values in selection["options"][selection["scorer"]]["curve"].values())
    assert selection["budget_reference"] == pytest.approx(best - config.rerank.surplus_share * selection["lead_bound"])
    assert trial["tail_weight"] == weight  # the weight the rank stage gives this ranker, chosen the same way
    assert trial["ndcg@10"] == pytest.approx(curve[str(weight)]["ndcg@10"], abs=1e-12)
    assert trial["tail_recall@10"] == pytest.approx(curve[str(weight)]["tail_recall@10"], abs=1e-12)


def test_without_labelled_queries_the_final_stage_chooses_among_sources(run_ctx, tmp_path):
    """A shop whose valid window has no bought candidate: no ranker is trained, the run says why, and the final
    stage still chooses a scorer (a source or the blend) and a tail_weight on valid."""
    import shutil

    from ray_longtail import ranking_stages
    from ray_longtail.artifacts import SELECTION
    from ray_longtail.config import replace

    shutil.copytree(run_ctx.store.root, tmp_path / "run")
    config = replace(run_ctx.config, **{"artifacts": str(tmp_path), "run_id": "run"})
    ctx = RunContext(config, RunStore(str(tmp_path), "run"))
    for name in ctx.fold_names():
        ctx.set_features(name, ctx.features(name).assign(label=0.0))
    shutil.rmtree(tmp_path / "run" / "ranker")
    summary = ranking_stages.stage_rank(ctx)
    selection = ctx.store.read_json(SELECTION)
    assert "ranker" not in selection["options"] and selection["scorer"] in {*config.retrieve.sources, "blend"}
    assert "ranker not trained" in summary["ranker"] and not (tmp_path / "run" / "ranker" / "model.ubj").exists()
