"""Rank: XGBoost learning-to-rank (`rank:ndcg`, one query group per user) trained with Ray Train.

Distributed XGBoost ranking has a known trap: Ray Train's default dataset split cuts blocks by row count, so a
query group can land on two workers and silently count as two queries. Here every worker gets the full
dataset (`DataConfig(datasets_to_split=[])`) and keeps the users with `qid % world_size == rank`, sorted by
qid (DMatrix needs contiguous groups). Checkpoints every `checkpoint_every` rounds and after each finished
ensemble member let a restarted worker group (FailureConfig) keep the finished members and resume the one in
progress (XGBoost reseeds its row sampling on a resumed booster and early stopping restarts its patience, so a
resumed member is a valid fit, not the one an uninterrupted run would have made). Batch scoring runs as Ray Data
`map_batches`.

The ranker is an average of `rank.ensemble_size` boosters fit on the same queries with seeds seed, seed + 1, ...
(row subsampling makes them differ): one booster's test NDCG@10 varies by a few percent with its seed, and the
average of three scored 2.7-4.6 % more at the chosen tail_weight than a single booster's mean on five shops, with
less spread (README, design notes). The members are merged into one booster (`average_boosters`), so scoring,
saving and serving handle the ensemble as one model.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xgboost

from ray_longtail.config import RankConfig
from ray_longtail.data import schema as S
from ray_longtail.progress import log as progress_log
from ray_longtail.progress import progress_line

if TYPE_CHECKING:
    import ray.train

MODEL_FILE = "model.ubj"
MEMBER_ROUNDS = "member_rounds"  # attribute of an averaged booster: each member's round count, comma-separated
ENSEMBLE_STATE = "ensemble.json"  # in a Train checkpoint: how many of its member files are finished


def xgb_params(config: RankConfig, nthread: int = 1, seed: int = 0) -> dict[str, Any]:
    return {"objective": "rank:ndcg", "eval_metric": ["ndcg@10"], "tree_method": "hist", "eta": config.eta,
            "max_depth": config.max_depth, "min_child_weight": config.min_child_weight,
            "subsample": config.subsample, "lambdarank_pair_method": "topk", "lambdarank_num_pair_per_sample": 10,
            "nthread": nthread, "seed": seed}


def shard_queries(frame: pd.DataFrame, rank: int, world_size: int) -> pd.DataFrame:
    """This worker's whole query groups (qid % world_size == rank), sorted by qid so groups are contiguous."""
    mine = frame[frame[S.QID].to_numpy(np.int64) % world_size == rank]
    return mine.sort_values(S.QID, kind="stable").reset_index(drop=True)


def _dmatrix(frame: pd.DataFrame, features: list[str]) -> xgboost.DMatrix:
    return xgboost.DMatrix(frame[features].to_numpy(np.float32), label=frame[S.LABEL].to_numpy(np.float32),
                           qid=frame[S.QID].to_numpy(np.int64), feature_names=features, missing=np.nan)


def train_fn_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker loop: shard by qid, resume from the last checkpoint, fit the ensemble's members one after
    another (member m with seed + m), checkpoint periodically."""
    import ray.train

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    features = config["features"]
    train = shard_queries(ray.train.get_dataset_shard("train").materialize().to_pandas(), rank, world)
    valid = shard_queries(ray.train.get_dataset_shard("valid").materialize().to_pandas(), rank, world)
    dtrain, dvalid = _dmatrix(train, features), _dmatrix(valid, features)
    members, partial = restore_members(ray.train.get_checkpoint())
    for member in range(len(members), config["ensemble_size"]):
        done = partial.num_boosted_rounds() if partial is not None else 0
        callbacks = [PeriodicCheckpoint(config["checkpoint_every"], rank, members), *config["callbacks"]]
        if config["progress"]:
            callbacks.append(RoundProgress(config["num_boost_round"], member, config["ensemble_size"]))
        params = config["params"] | {"seed": config["params"]["seed"] + member}
        members = [*members, fit_booster(params, dtrain, dvalid, config["num_boost_round"] - done,
                                         config["early_stopping_rounds"], callbacks, partial)]
        partial = None
        if len(members) < config["ensemble_size"]:  # a failure later on does not refit the finished members
            _report(members, len(members), rank, {"member": member, "rounds": members[-1].num_boosted_rounds()})
    rounds = [m.num_boosted_rounds() for m in members]
    _report(members, len(members), rank, {"rounds": sum(rounds), MEMBER_ROUNDS: rounds,
                                          "train_groups": int(train[S.QID].nunique()), "world_size": world})


def restore_members(checkpoint: ray.train.Checkpoint | None,
                    ) -> tuple[list[xgboost.Booster], xgboost.Booster | None]:
    """(finished members, the unfinished member's booster or None) of a Train checkpoint (none: ([], None))."""
    if not checkpoint:
        return [], None
    with checkpoint.as_directory() as folder:
        finished = json.loads(Path(folder, ENSEMBLE_STATE).read_text())["finished"]
        boosters = [xgboost.Booster(model_file=str(path)) for path in sorted(
            Path(folder).glob("member-*.ubj"), key=lambda path: int(path.stem.split("-")[1]))]
    return boosters[:finished], (boosters[finished] if len(boosters) > finished else None)


def fit_booster(params: dict[str, Any], dtrain: xgboost.DMatrix, dvalid: xgboost.DMatrix, rounds: int,
                early_stopping_rounds: int, callbacks: list, booster: xgboost.Booster | None = None):
    """`xgboost.train` as every ranker fit runs it (Ray Train workers and `tune` trials alike): early stopping
    on the valid queries' NDCG@10 without rolling back to the best round."""
    callbacks = list(callbacks)
    if early_stopping_rounds:
        callbacks.append(xgboost.callback.EarlyStopping(rounds=early_stopping_rounds, save_best=False,
                                                        data_name="valid", metric_name="ndcg@10", maximize=True))
    return xgboost.train(params, dtrain, num_boost_round=max(0, rounds), evals=[(dvalid, "valid")],
                         callbacks=callbacks, xgb_model=booster, verbose_eval=False)


def _report(boosters: list, finished: int, rank: int, metrics: dict[str, Any]) -> None:
    """Report `metrics` from every rank (a barrier); rank 0 attaches the boosters as the checkpoint (`finished`
    of them done, a last one possibly in progress)."""
    import ray.train

    if rank == 0:
        with tempfile.TemporaryDirectory() as folder:
            for member, booster in enumerate(boosters):
                booster.save_model(str(Path(folder) / f"member-{member}.ubj"))
            Path(folder, ENSEMBLE_STATE).write_text(json.dumps({"finished": finished}))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
    else:
        ray.train.report(metrics)


class PeriodicCheckpoint(xgboost.callback.TrainingCallback):
    """XGBoost callback: every `every` rounds, all ranks report (a barrier) and rank 0 attaches the finished
    members and the booster in progress."""

    def __init__(self, every: int, rank: int, finished: list):
        super().__init__()
        self.every, self.rank, self.finished = every, rank, finished

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        rounds = model.num_boosted_rounds()
        if self.every and rounds % self.every == 0:
            score = evals_log.get("valid", {}).get("ndcg@10", [float("nan")])[-1]
            _report([*self.finished, model], len(self.finished), self.rank,
                    {"member": len(self.finished), "rounds": rounds, "valid_ndcg10": float(score)})
        return False


class RoundProgress(xgboost.callback.TrainingCallback):
    """XGBoost callback: rank 0 prints a progress line (member, rounds, rate, ETA, valid NDCG@10) at most every
    `every_s` seconds; Ray sends it to the driver's log (the driver adds it only when INFO is shown, i.e. not with
    -q)."""

    def __init__(self, total_rounds: int, member: int = 0, members: int = 1, every_s: float = 10.0):
        super().__init__()
        self.total, self.member, self.members, self.every_s = total_rounds, member, members, every_s
        self.start = self.last = 0.0
        self.first = 0

    def before_training(self, model):
        self.start, self.last = time.perf_counter(), float("-inf")
        self.first = model.num_boosted_rounds()  # > 0 when resumed from a checkpoint
        return model

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        import ray.train

        now = time.perf_counter()
        if ray.train.get_context().get_world_rank() == 0 and now - self.last >= self.every_s:
            self.last = now
            score = evals_log.get("valid", {}).get("ndcg@10", [float("nan")])[-1]
            what = f"ranker {self.member + 1}/{self.members}" + (f" from round {self.first}" if self.first else "")
            done = model.num_boosted_rounds() - self.first
            print(f"{progress_line(what, done, self.total - self.first, 'rounds', now - self.start)} "
                  f"(early stopping may end it sooner), valid ndcg@10 {score:.4f}", flush=True)
        return False


def query_frames(train: pd.DataFrame, valid: pd.DataFrame, features: list[str]) -> tuple[pd.DataFrame, ...]:
    """The columns the ranker reads, typed as both training paths expect them."""
    columns = [S.QID, S.LABEL, *features]
    return tuple(f[columns].astype({S.QID: np.int64, S.LABEL: np.float32}) for f in (train, valid))


def train_ranker(train: pd.DataFrame, valid: pd.DataFrame, features: list[str], config: RankConfig,
                 storage_path: str | None = None, seed: int = 0, max_failures: int = 1,
                 callbacks: list | None = None) -> tuple[Any, dict[str, Any]]:
    """Fit the ranker (`rank.ensemble_size` members, averaged) on Ray Train. `train`/`valid` hold `qid`, `label` and
    the feature columns; `callbacks`: extra XGBoost `TrainingCallback`s run on every worker (progress logging,
    fault drills).

    Returns (xgboost.Booster, info with the members' rounds and rank 0's query groups).
    """
    import ray
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.xgboost import XGBoostTrainer

    train, valid = query_frames(train, valid, features)
    storage = storage_path or tempfile.mkdtemp(prefix="ray_longtail_train_")
    loop_config = {"features": features, "params": xgb_params(config, nthread=max(1, int(config.cpus_per_worker)),
                                                              seed=seed),
                   "num_boost_round": config.num_boost_round, "early_stopping_rounds": config.early_stopping_rounds,
                   "ensemble_size": config.ensemble_size, "checkpoint_every": 25,
                   "callbacks": list(callbacks or []), "progress": progress_log.isEnabledFor(logging.INFO)}
    trainer = XGBoostTrainer(
        train_fn_per_worker, train_loop_config=loop_config,
        datasets={"train": ray.data.from_pandas(train), "valid": ray.data.from_pandas(valid)},
        dataset_config=DataConfig(datasets_to_split=[]),
        scaling_config=ScalingConfig(num_workers=config.num_workers,
                                     resources_per_worker={"CPU": config.cpus_per_worker}),
        run_config=RunConfig(name=f"ranker_{int(time.time() * 1000)}", storage_path=str(Path(storage).absolute()),
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             failure_config=FailureConfig(max_failures=max_failures)),
    )
    result = trainer.fit()
    members, _ = restore_members(result.checkpoint)
    if len(members) != config.ensemble_size:
        raise RuntimeError(f"Ray Train returned {len(members)} finished ranker members, not {config.ensemble_size}")
    return average_boosters(members), dict(result.metrics or {})


def train_ranker_local(train: pd.DataFrame, valid: pd.DataFrame, features: list[str], config: RankConfig,
                       seed: int = 0) -> xgboost.Booster:
    """The same fit in this process (one thread): what a `tune` trial runs inside its Ray Tune worker."""
    train, valid = query_frames(train, valid, features)
    dtrain, dvalid = (_dmatrix(shard_queries(f, 0, 1), features) for f in (train, valid))
    nthread = max(1, int(config.cpus_per_worker))
    return average_boosters([fit_booster(xgb_params(config, nthread=nthread, seed=seed + member), dtrain, dvalid,
                                         config.num_boost_round, config.early_stopping_rounds, [])
                             for member in range(config.ensemble_size)])


def fit_fixed_rounds(queries: pd.DataFrame, features: list[str], config: RankConfig, rounds: list[int],
                     seed: int = 0) -> xgboost.Booster:
    """The ranker's fit on `queries` with one member per entry of `rounds` (member m: seed + m, exactly
    `rounds[m]` rounds, no early stopping), averaged, in this process: a cross-fitting group's ranker fit like
    the stage's (`crossfit.py`, `member_rounds`)."""
    frame = query_frames(queries, queries.iloc[:0], features)[0]
    dtrain = _dmatrix(shard_queries(frame, 0, 1), features)
    nthread = max(1, int(config.cpus_per_worker))
    return average_boosters([xgboost.train(xgb_params(config, nthread=nthread, seed=seed + member), dtrain,
                                           num_boost_round=max(0, count)) for member, count in enumerate(rounds)])


def average_boosters(members: list[xgboost.Booster]) -> xgboost.Booster:
    """One booster whose margin is the mean of the members' margins: their trees concatenated, each leaf value
    divided by the member count, the base score averaged. Its `member_rounds` attribute keeps each member's round
    count; the early-stopping attributes of the members are dropped (they describe one member). For the ranker's
    boosters: identity link (`rank:*` objectives), one scalar-leaf tree per round."""
    if not members:
        raise ValueError("average_boosters needs at least one booster")
    models = [json.loads(member.save_raw("json")) for member in members]
    merged = models[0]
    learner = merged["learner"]
    base = [float(m["learner"]["learner_model_param"]["base_score"].strip("[]")) for m in models]
    if len(set(base)) > 1:
        learner["learner_model_param"]["base_score"] = f"[{np.mean(base):.9E}]"
    trees = [tree for model in models for tree in model["learner"]["gradient_booster"]["model"]["trees"]]
    for index, tree in enumerate(trees):
        tree["id"] = index
        is_leaf = np.asarray(tree["left_children"]) == -1
        tree["base_weights"] = [w / len(models) for w in tree["base_weights"]]
        tree["split_conditions"] = [c / len(models) if leaf else c
                                    for c, leaf in zip(tree["split_conditions"], is_leaf, strict=True)]
    booster_model = learner["gradient_booster"]["model"]
    booster_model.update(trees=trees, tree_info=[0] * len(trees), iteration_indptr=list(range(len(trees) + 1)))
    booster_model["gbtree_model_param"].update(num_trees=str(len(trees)), num_parallel_tree="1")
    learner["attributes"] = {MEMBER_ROUNDS: ",".join(str(member.num_boosted_rounds()) for member in members)}
    return xgboost.Booster(model_file=bytearray(json.dumps(merged).encode()))


def member_rounds(booster: xgboost.Booster) -> list[int]:
    """The round count of each member averaged into `booster` (one member: its rounds)."""
    value = booster.attr(MEMBER_ROUNDS)
    return [int(count) for count in value.split(",")] if value else [booster.num_boosted_rounds()]


def predict(booster: xgboost.Booster, frame: pd.DataFrame | Mapping[str, np.ndarray],
            features: list[str]) -> np.ndarray:
    """Ranker scores of the rows of `frame` (a DataFrame or a dict of column arrays; in-place prediction: no
    DMatrix, cheap for small requests)."""
    if isinstance(frame, pd.DataFrame):
        if frame.empty:
            return np.zeros(0, dtype=np.float32)
        data = np.ascontiguousarray(frame[features].to_numpy(np.float32))
    else:
        data = np.stack([np.asarray(frame[name], dtype=np.float32) for name in features], axis=1)
        if not len(data):
            return np.zeros(0, dtype=np.float32)
    return np.asarray(booster.inplace_predict(data, missing=np.nan), dtype=np.float32)


class ScoreBatch:
    """Ray Data callable class: one booster per actor, scores batches of feature rows."""

    def __init__(self, model: bytes, features: list[str]):
        self.booster = xgboost.Booster(model_file=bytearray(model))
        self.features = features

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"row": batch["row"].to_numpy(), "pred": predict(self.booster, batch, self.features)})


def score_on_ray(booster, frame: pd.DataFrame, features: list[str], block_rows: int = 100_000) -> np.ndarray:
    """Ranker scores of every row of `frame`, computed by a Ray Data actor pool; returned in row order."""
    import ray

    data = frame[features].assign(row=np.arange(len(frame)))
    blocks = [data.iloc[i:i + block_rows] for i in range(0, len(data), block_rows)] or [data]
    scored = ray.data.from_pandas(blocks).map_batches(
        ScoreBatch, fn_constructor_args=(bytes(booster.save_raw("ubj")), features), batch_format="pandas",
        batch_size=block_rows, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1)
    out = np.empty(len(frame), dtype=np.float32)
    for batch in scored.iter_batches(batch_size=None, batch_format="pandas"):
        out[batch["row"].to_numpy()] = batch["pred"].to_numpy()
    return out


def save_ranker(store, booster, features: list[str], info: dict[str, Any]) -> None:
    """`ranker/`: model.ubj, features.json (ordered feature list + params), importance.json (gain)."""
    with tempfile.TemporaryDirectory() as folder:
        booster.save_model(str(Path(folder) / MODEL_FILE))
        Path(folder, "features.json").write_text(json.dumps({"features": features, "info": info}, default=str))
        gain = booster.get_score(importance_type="gain")
        Path(folder, "importance.json").write_text(json.dumps(dict(sorted(gain.items(), key=lambda kv: -kv[1]))))
        store.upload_dir("ranker", folder)


def load_ranker(store) -> tuple[xgboost.Booster, list[str]]:
    folder = store.download_dir("ranker")
    features = json.loads((folder / "features.json").read_text())["features"]
    return xgboost.Booster(model_file=str(folder / MODEL_FILE)), features
