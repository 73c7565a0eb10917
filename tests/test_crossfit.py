"""Cross-fitting (`crossfit.py`, no Ray): the groups, how many of them the selection uses, and that every
selection user's ranker scores come from a ranker that never saw their labels; the averaged ranker (`rank.py`)."""

import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn.metrics import roc_auc_score

from ray_longtail import choose, crossfit, scoring
from ray_longtail.config import RankConfig
from ray_longtail.rank import fit_fixed_rounds, member_rounds, predict

N_USERS, PER_USER, FEATURES = 300, 20, [f"f{i}" for i in range(6)]


@pytest.fixture(scope="module")
def noise_fold():
    """Feature rows whose features are noise and whose labels are a coin flip: nothing generalises, so a
    ranker scores a user's bought rows above the rest only where it was fit on that user's labels."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(N_USERS), PER_USER)
    frame = pd.DataFrame(rng.normal(size=(len(users), len(FEATURES))), columns=FEATURES)
    frame = frame.assign(user=users, item=np.tile(np.arange(PER_USER), N_USERS),
                         label=(rng.random(len(users)) < 0.2).astype(np.float64), is_tail=0.0)
    train, holdout = choose.holdout_split(np.arange(N_USERS), 0.2, seed=3)
    return frame, train, holdout, tuple(crossfit.train_user_groups(train, 4, seed=3))


def test_groups_partition_the_train_users_and_leave_the_holdout_split_as_it_was(noise_fold):
    _, train, holdout, groups = noise_fold
    assert sorted(np.concatenate(groups)) == sorted(train) and sum(len(g) for g in groups) == len(train)
    assert all(0.15 * len(train) < len(g) < 0.35 * len(train) for g in groups)
    again_train, again_holdout = choose.holdout_split(np.arange(N_USERS), 0.2, seed=3)
    assert np.array_equal(again_holdout, holdout) and np.array_equal(again_train, train)
    assert sorted(crossfit.selection_users(holdout, groups)) == list(range(N_USERS))


@pytest.mark.parametrize(("holdout", "min_users", "groups", "used"),
                         [(6000, 5000, 4, 0), (5000, 5000, 4, 0), (2600, 5000, 4, 1), (520, 5000, 4, 4),
                          (111, 5000, 4, 4), (0, 5000, 4, 4), (520, 5000, 0, 0), (1000, 2500, 4, 2)])
def test_groups_join_the_held_out_users_only_until_the_selection_has_enough(holdout, min_users, groups, used):
    assert crossfit.groups_to_use(holdout, min_users, groups) == used


def test_every_selection_user_is_scored_by_a_ranker_that_never_saw_their_labels(noise_fold):
    frame, train, holdout, groups = noise_fold
    config = RankConfig(max_depth=8, min_child_weight=0.0, subsample=1.0)
    queries, _ = scoring.fold_queries([(frame, train, holdout)])
    stage_ranker = fit_fixed_rounds(queries, FEATURES, config, rounds=[60])
    (scores,) = crossfit.crossfit_scores([(frame, train, holdout, groups)], stage_ranker, FEATURES, config, seed=0)
    everyone, _ = scoring.fold_queries([(frame, np.arange(N_USERS), np.zeros(0, int))])
    in_sample = predict(fit_fixed_rounds(everyone, FEATURES, config, rounds=[60]), frame, FEATURES)
    labels = frame["label"].to_numpy()
    assert roc_auc_score(labels, in_sample) > 0.8  # a ranker fit on these labels memorises them
    assert abs(roc_auc_score(labels, scores) - 0.5) < 0.05  # cross-fitted: noise is all it has
    is_holdout = frame["user"].isin(holdout).to_numpy()
    assert np.array_equal(scores[is_holdout], predict(stage_ranker, frame[is_holdout], FEATURES))


def test_without_groups_only_the_held_out_users_are_scored(noise_fold):
    frame, train, holdout, _ = noise_fold
    queries, _ = scoring.fold_queries([(frame, train, holdout)])
    ranker = fit_fixed_rounds(queries, FEATURES, RankConfig(), rounds=[5])
    (scores,) = crossfit.crossfit_scores([(frame, train, holdout, ())], ranker, FEATURES, RankConfig(), seed=0)
    assert np.array_equal(scores, predict(ranker, frame[frame["user"].isin(holdout)], FEATURES))


def test_an_averaged_ranker_scores_the_mean_of_its_members_and_keeps_their_rounds(noise_fold, tmp_path):
    frame, train, holdout, _ = noise_fold
    queries, _ = scoring.fold_queries([(frame, train, holdout)])
    config = RankConfig()  # subsample 0.8: the seed changes a member
    members = [predict(fit_fixed_rounds(queries, FEATURES, config, rounds=[count], seed=seed), frame, FEATURES)
               for seed, count in ((3, 10), (4, 25))]
    averaged = fit_fixed_rounds(queries, FEATURES, config, rounds=[10, 25], seed=3)
    assert not np.allclose(*members)
    np.testing.assert_allclose(predict(averaged, frame, FEATURES), np.mean(members, axis=0), atol=1e-5)
    averaged.save_model(str(tmp_path / "model.ubj"))
    loaded = xgboost.Booster(model_file=str(tmp_path / "model.ubj"))
    assert member_rounds(loaded) == [10, 25] and loaded.num_boosted_rounds() == 35
    np.testing.assert_array_equal(predict(loaded, frame, FEATURES), predict(averaged, frame, FEATURES))
    plain = xgboost.train({"objective": "rank:ndcg"}, xgboost.DMatrix(frame[FEATURES], label=frame["label"],
                                                                      qid=frame["user"]), num_boost_round=4)
    assert member_rounds(plain) == [4]  # a booster saved before ensembles: one member


def test_group_rankers_are_fit_with_the_stage_rankers_member_rounds(noise_fold):
    frame, train, holdout, groups = noise_fold
    queries, _ = scoring.fold_queries([(frame, train, holdout)])
    stage_ranker = fit_fixed_rounds(queries, FEATURES, RankConfig(), rounds=[4, 7])
    fitted = []

    def fit_groups(*args):
        fitted.extend(crossfit.fit_groups_local(*args))
        return fitted

    crossfit.crossfit_scores([(frame, train, holdout, groups)], stage_ranker, FEATURES, RankConfig(), seed=0,
                             fit_groups=fit_groups)
    assert [member_rounds(booster) for booster in fitted] == [[4, 7]] * len(groups)
