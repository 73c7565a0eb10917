"""The pipeline: stages in order, each reading only earlier stages' artifacts, skipped when its outputs exist.

A stage is a function `(RunContext) -> summary dict` plus the artifact names it writes. `run_stages` runs
the requested stages (and whatever they need that is missing), records timings in `manifest.json`, and
returns the run's store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ray_longtail import __version__, ranking_stages, stages
from ray_longtail.artifacts import (
    CANDIDATES,
    EXPOSURE_PATHS,
    FEATURE_NAMES,
    FEATURES,
    SELECTION,
    SERVING_LISTS,
    SOURCES_ARTIFACT,
    RunStore,
    candidates_artifact,
    features_artifact,
    file_fingerprint,
)
from ray_longtail.config import Config, config_to_dict
from ray_longtail.data import schema as S
from ray_longtail.data.split import Cuts
from ray_longtail.enrich import feature_catalog
from ray_longtail.errors import UserError
from ray_longtail.features import FeatureBuilder
from ray_longtail.phase import Phase, fold_names, load_phase, read_catalog_ids, read_item_vectors
from ray_longtail.rank import MODEL_FILE, load_ranker
from ray_longtail.runtime import ray_session
from ray_longtail.scoring import RankerScorer, fit_feature_builder, selection_options

log = logging.getLogger(__name__)


def make_run_id(config: Config) -> str:
    """`<dataset>-<hash>`: the same inputs and config give the same run id, so reruns skip finished stages."""
    if config.run_id:
        return config.run_id
    items, interactions = stages.input_paths(config)
    resolved = config_to_dict(config)
    for key in ("artifacts", "run_id", "ray"):  # where and how it runs does not change the results
        resolved.pop(key)
    resolved["embed"].pop("runtime")  # both runtimes execute the same fp32 graph (vectors equal to ~1e-6)
    resolved["serve"] = {"precompute_users": config.serve.precompute_users}  # the rest only configures the server
    if config.serve.precompute_days is not None:
        resolved["serve"]["precompute_days"] = config.serve.precompute_days
    if not config.feedback.events:  # no events folded: the same run as before the feedback section existed
        resolved.pop("feedback")
    fingerprints = [file_fingerprint(items)["sha256_sampled"], file_fingerprint(interactions)["sha256_sampled"]]
    if config.feedback.events:  # the same store with new segments is a new run
        from ray_longtail.serve.events import open_events

        fingerprints.append(file_fingerprint(open_events(config.feedback.events).uri)["sha256_sampled"])
    digest = hashlib.sha256(json.dumps([resolved, fingerprints], sort_keys=True).encode()).hexdigest()[:8]
    name = Path(items.rstrip("/")).parent.name or "run"
    return f"{name}-{digest}"


@dataclass
class RunContext:
    """What a stage sees: the config, the run's store, and what earlier stages of this process built or read
    (each kind in its own typed memo, read through the accessors below)."""

    config: Config
    store: RunStore
    _tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    _phases: dict[str, Phase] = field(default_factory=dict)
    _candidates: dict[str, pd.DataFrame] = field(default_factory=dict)
    _features: dict[str, pd.DataFrame] = field(default_factory=dict)
    _builders: dict[str, FeatureBuilder] = field(default_factory=dict)
    _items: dict[str, np.ndarray] = field(default_factory=dict)
    _ranker: RankerScorer | None = None

    def table(self, name: str) -> pd.DataFrame:
        """An artifact table as written (ids form), read once."""
        if name not in self._tables:
            self._tables[name] = self.store.read_table(name)
        return self._tables[name]

    def feature_catalog(self) -> pd.DataFrame:
        """The catalog with confidently inferred categories in its empty ones (`enrich.feature_catalog`)."""
        segments = self.store.read_table("item_segments.parquet") if self.store.exists("item_segments.parquet") \
            else None
        return feature_catalog(self.table("catalog.parquet"), segments)

    def cuts(self) -> Cuts:
        return Cuts(**self.store.read_json("split/cuts.json"))

    def catalog_ids(self) -> np.ndarray:
        if "ids" not in self._items:
            self._items["ids"] = read_catalog_ids(self.store)
        return self._items["ids"]

    def vectors(self) -> np.ndarray:
        """Item embeddings (n_items, dim) aligned to the catalog order."""
        if "vectors" not in self._items:
            self._items["vectors"] = read_item_vectors(self.store, self.catalog_ids())
        return self._items["vectors"]

    def phase(self, name: str) -> Phase:
        """The "fit" (train -> valid) or "eval" (train+valid -> test) phase, built once per process."""
        if name not in self._phases:
            self._phases[name] = load_phase(self.store, name, self.config, self.catalog_ids(), self.vectors())
        return self._phases[name]

    def forget_phases(self) -> None:
        """Drop built phases and what depends on them (after discover writes the clusters they use, and
        between retrieval phases to bound memory)."""
        self._phases.clear()
        self._builders.clear()

    def fold_names(self) -> list[str]:
        """The ranker's labelled phases, newest ("fit") first (`phase.fold_names`)."""
        return fold_names(self.config, self.store.read_json("split/cuts.json"))

    def ids_frame(self, phase_name: str, long: pd.DataFrame) -> pd.DataFrame:
        """A (user, item) index frame with user_id / item_id strings instead, for artifacts."""
        history = self.phase(phase_name).history
        out = long.drop(columns=["user", "item"])
        out.insert(0, S.ITEM_ID, history.item_ids[long["item"].to_numpy()].astype(str))
        out.insert(0, S.USER_ID, history.user_ids[long["user"].to_numpy()].astype(str))
        return out

    def candidates(self, phase_name: str) -> pd.DataFrame:
        """Long candidate frame (user, item, source, score, rank) of a phase, as indices."""
        if phase_name not in self._candidates:
            frame = self.store.read_table(candidates_artifact(phase_name))
            history = self.phase(phase_name).history
            user = history.user_index(frame[S.USER_ID].to_numpy())
            item = pd.Index(history.item_ids).get_indexer(frame[S.ITEM_ID])
            self._candidates[phase_name] = frame.drop(columns=[S.USER_ID, S.ITEM_ID]).assign(user=user, item=item)
        return self._candidates[phase_name]

    def set_candidates(self, phase_name: str, long: pd.DataFrame) -> None:
        self._candidates[phase_name] = long

    def features(self, phase_name: str) -> pd.DataFrame:
        """Feature rows (index form) of a phase's candidate union; the fit phase's carry labels."""
        if phase_name not in self._features:
            self._features[phase_name] = self.store.read_table(features_artifact(phase_name))
        return self._features[phase_name]

    def set_features(self, phase_name: str, features: pd.DataFrame) -> None:
        self._features[phase_name] = features

    def builder(self, phase_name: str) -> FeatureBuilder:
        """The phase's fitted FeatureBuilder."""
        if phase_name not in self._builders:
            self._builders[phase_name] = fit_feature_builder(self.phase(phase_name), self.feature_catalog(),
                                                             self.config)
        return self._builders[phase_name]

    def scorer(self, name: str):
        """A final-stage scorer by name: "ranker" (trained in this process, or read from `ranker/`), "blend",
        or a union source alone (`scoring.selection_options`)."""
        if name == "ranker":
            if self._ranker is None:
                if not self.store.exists(f"ranker/{MODEL_FILE}"):
                    why = self.store.read_bytes("ranker/_SUCCESS").decode() if self.store.exists("ranker/_SUCCESS") \
                        else "the rank stage has not run"
                    raise UserError(f"run {self.store.run_id} has no trained ranker: {why}")
                self._ranker = RankerScorer(*load_ranker(self.store))
            return self._ranker
        return selection_options(self.config, None)[name]

    def set_ranker(self, ranker: RankerScorer) -> None:
        self._ranker = ranker


@dataclass(frozen=True)
class Stage:
    name: str
    outputs: tuple[str, ...]
    run: Callable[[RunContext], dict[str, Any]]
    needs: tuple[str, ...] = ()
    uses_ray: bool = False


STAGES: list[Stage] = [
    Stage("ingest", ("catalog.parquet", "interactions.parquet", "ingest_report.json"), stages.stage_ingest),
    Stage("split", ("split/train.parquet", "split/valid.parquet", "split/test.parquet", "split/cuts.json"),
          stages.stage_split, needs=("ingest",)),
    Stage("finetune", ("encoder/_SUCCESS",), stages.stage_finetune, needs=("split",), uses_ray=True),
    Stage("embed", ("item_embeddings.parquet",), stages.stage_embed, needs=("finetune",), uses_ray=True),
    Stage("discover", ("item_segments.parquet", "clusters.parquet"), stages.stage_discover, needs=("split", "embed")),
    Stage("profile", ("user_profiles.parquet",), stages.stage_profile, needs=("discover",)),
    Stage("retrieve", (*CANDIDATES.values(), SOURCES_ARTIFACT), stages.stage_retrieve, needs=("discover",),
          uses_ray=True),
    Stage("features", (*FEATURES.values(), FEATURE_NAMES), stages.stage_features, needs=("retrieve",),
          uses_ray=True),
    Stage("rank", ("ranker/_SUCCESS", SELECTION), ranking_stages.stage_rank, needs=("features",), uses_ray=True),
    Stage("serving", (SERVING_LISTS, EXPOSURE_PATHS), ranking_stages.stage_serving, needs=("rank",), uses_ray=True),
    Stage("evaluate", ("metrics.json", "recommendations.parquet", "report.md", "report.html"),
          ranking_stages.stage_evaluate, needs=("features", "rank", "serving"), uses_ray=True),
]


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"ray_longtail": __version__, "python": platform.python_version()}
    for package in ("ray", "torch", "transformers", "xgboost", "scikit-learn", "pandas", "pyarrow", "implicit"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            continue
    return out


def open_run(config: Config) -> RunStore:
    store = RunStore(config.artifacts, make_run_id(config))
    manifest = store.manifest()
    resolved = config_to_dict(config)
    if manifest.get("config") and manifest["config"] != resolved:
        log.warning("run %s exists with a different config; finished stages are kept (use --force to redo)",
                    store.run_id)
    store.update_manifest(run_id=store.run_id, config=resolved, versions=_versions(),
                          created=manifest.get("created") or datetime.now(timezone.utc).isoformat())
    return store


def run_stages(config: Config, until: str | None = None, only: list[str] | None = None,
               force: bool = False) -> RunStore:
    """Run the pipeline up to and including `until` (all stages when None), or just `only` (plus missing needs).

    Stages whose outputs all exist are skipped unless `force` (which then applies to the selected stages only)
    or a stage they need was recomputed in this call.
    """
    names = stage_names()
    if until is not None and until not in names:
        raise UserError(f"unknown stage {until!r}; stages: {', '.join(names)}")
    selected = only or (names[: names.index(until) + 1] if until else names)
    store = open_run(config)
    ctx = RunContext(config, store)
    by_name = {s.name: s for s in STAGES}
    done: set[str] = set()
    ran: set[str] = set()  # stages recomputed in this call: their dependants are recomputed too
    resources = ExitStack()
    ray_entered: list[bool] = []

    def execute(stage: Stage, forced: bool) -> None:
        if stage.name in done:
            return
        for need in stage.needs:
            execute(by_name[need], forced=False)
        forced = forced or any(need in ran for need in stage.needs)
        if not forced and all(store.exists(o) for o in stage.outputs):
            log.info("stage %-9s skipped (outputs exist)", stage.name)
            done.add(stage.name)
            return
        log.info("stage %-9s running", stage.name)
        if stage.uses_ray and not ray_entered:
            resources.enter_context(ray_session(config.ray))
            ray_entered.append(True)
        start = time.perf_counter()
        summary = stage.run(ctx)
        seconds = round(time.perf_counter() - start, 2)
        log.info("stage %-9s done in %.1fs %s", stage.name, seconds, summary)
        store.update_manifest(stages={stage.name: {"seconds": seconds, "summary": summary,
                                                    "finished": datetime.now(timezone.utc).isoformat()}})
        done.add(stage.name)
        ran.add(stage.name)

    with resources:
        for name in selected:
            execute(by_name[name], forced=force)
    return store
