"""Typed, frozen configuration: dataclass defaults < YAML file < CLI overrides (`--set a.b=v`).

`configs/default.yaml` documents every key; `load_config` type-checks values and rejects unknown keys with a
`ConfigError` that names the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ray_longtail.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    items: str | None = None  # None = bundled Online Retail catalog
    interactions: str | None = None
    exclude_non_product: bool = True  # drop items with is_standard_stockcode == False when that column exists
    max_unknown_item_share: float = 0.01  # above: DataError; below: unknown-item rows dropped and counted
    events: list[str] = field(default_factory=list)  # keep only these event types; empty = all
    sample_users_fraction: float = 1.0  # keep a seeded random share of users (quick runs, tests)


@dataclass(frozen=True)
class SplitConfig:
    test_days: float | None = 30.0
    valid_days: float | None = None  # None = same length as the test window
    test_fraction: float | None = None  # used when test_days is null
    valid_fraction: float | None = None


@dataclass(frozen=True)
class EmbedConfig:
    model: str = "sentence-transformers/all-MiniLM-L6-v2"  # or a local path, or "hashing" (weight-free, CPU-fast)
    text_fields: list[str] = field(default_factory=lambda: ["title", "category", "brand", "description"])
    max_length: int = 128
    batch_size: int = 64  # texts per forward pass
    block_size: int = 1024  # rows per Ray Data batch handed to one actor call
    num_actors: int = 1
    cpus_per_actor: float = 1.0
    num_gpus_per_actor: float = 0.0  # > 0 puts actors on GPUs (fp16); "auto" behaviour via device below
    device: str = "auto"  # auto | cpu | cuda


@dataclass(frozen=True)
class DiscoverConfig:
    head_share: float = 0.2
    n_clusters: int = 32
    label_terms: int = 4
    seed: int = 0


@dataclass(frozen=True)
class ProfileConfig:
    half_life_days: float = 90.0
    max_history: int = 100


@dataclass(frozen=True)
class RetrieveConfig:
    sources: list[str] = field(
        default_factory=lambda: ["content", "itemknn", "ease", "als", "popular", "tail_explore"])
    n_per_source: int = 50
    user_batch_size: int = 512
    use_ray: bool = True  # candidate generation on a Ray Data actor pool over user shards
    max_actors: int = 2  # the pool autoscales from 1 to max_actors 1-CPU actors
    itemknn_neighbors: int = 100
    ease_lambda: float = 250.0
    ease_max_items: int = 15000  # EASE inverts an items² matrix: larger catalogs use their most popular items
    als_factors: int = 64
    als_iterations: int = 15
    als_regularization: float = 0.05
    tail_explore_clusters: int = 3


@dataclass(frozen=True)
class RankConfig:
    enabled: bool = True
    num_workers: int = 2
    cpus_per_worker: float = 0.5
    eta: float = 0.1
    max_depth: int = 6
    min_child_weight: float = 1.0
    subsample: float = 0.8
    num_boost_round: int = 200
    early_stopping_rounds: int = 20
    last_n_history: int = 20
    max_train_users: int = 20000
    holdout_share: float = 0.2  # fit-phase users held out for early stopping and tail_weight selection
    score_on_ray: bool = True  # batch scoring as Ray Data map_batches
    storage_path: str | None = None  # Ray Train storage (must be shared on a multi-node cluster); None = temp


@dataclass(frozen=True)
class RerankConfig:
    tail_weight: float = 0.3
    select_on_valid: bool = True  # pick tail_weight from eval.tail_weights on the valid window (see stages.py)
    ndcg_tolerance: float = 0.03  # accuracy budget of that choice: NDCG@10 >= (1 - tolerance) x the best weight's
    method: str = "xquad"  # xquad | mmr
    depth: int = 50


@dataclass(frozen=True)
class EvalConfig:
    ks: list[int] = field(default_factory=lambda: [10, 20])
    exclude_seen: bool = True
    max_users: int | None = None  # evaluate a seeded sample of at most this many users (None = all)
    tail_weights: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0])


@dataclass(frozen=True)
class TuneConfig:
    num_samples: int = 12
    max_concurrent: int = 1
    tail_recall_floor_ratio: float = 2.0  # floor = ratio × ItemKNN's TailRecall@10 on valid
    objective: str = "ndcg@10"  # metric maximised subject to the tail-recall floor
    seed: int = 0


@dataclass(frozen=True)
class RayConfig:
    address: str | None = None  # None = RAY_ADDRESS if set, else a new local instance; "auto" = a `ray start` one
    num_cpus: int | None = None
    object_store_memory_mb: int | None = None


@dataclass(frozen=True)
class PrivacyConfig:
    pseudonymize_users: bool = False
    key_env: str = "RAY_LONGTAIL_PSEUDONYM_KEY"


@dataclass(frozen=True)
class Config:
    artifacts: str = "artifacts"
    run_id: str | None = None  # None = a name derived from inputs + time
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    discover: DiscoverConfig = field(default_factory=DiscoverConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    retrieve: RetrieveConfig = field(default_factory=RetrieveConfig)
    rank: RankConfig = field(default_factory=RankConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)


def default_config_path() -> Path:
    """The commented YAML shipped with the package (also at the repo's `configs/default.yaml`)."""
    return Path(__file__).parent / "configs" / "default.yaml"


def _check_value(key: str, value: Any, tp: Any) -> Any:
    """Return `value` coerced to type `tp` or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(key, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is list:
        (inner,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} expects a list, got {value!r}")
        return [_check_value(key, v, inner) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} expects true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} expects an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key {key!r} expects a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key {key!r} expects a string, got {value!r}")
    raise ConfigError(f"config key {key!r}: unsupported type {tp}")


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {full!r}; known keys here: {', '.join(sorted(names))}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full!r} is a section; give its keys, e.g. {full}.<key>=...")
            kwargs[key] = _build(tp, value, prefix=f"{full}.")
        else:
            kwargs[key] = _check_value(full, value, tp)
    return cls(**kwargs)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["embed.batch_size=256", "split.test_days=null"]` -> nested dict; values parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: cannot parse value ({exc})") from exc
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return nested


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                extra: dict[str, Any] | None = None) -> Config:
    """Defaults < YAML at `path` (the packaged default when None) < `extra` < `overrides` (`a.b=v` strings)."""
    yaml_path = Path(path) if path else default_config_path()
    try:
        values = yaml.safe_load(yaml_path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {yaml_path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {yaml_path} is not valid YAML: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"config file {yaml_path} must hold a mapping of sections")
    values = _merge(values, extra or {})
    values = _merge(values, parse_overrides(overrides or []))
    return _build(Config, values)


def config_to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def replace(config: Config, **changes: Any) -> Config:
    """`replace(cfg, **{"rerank.tail_weight": 0.0})`: a copy with dotted keys changed (type-checked)."""
    values = config_to_dict(config)
    for dotted, value in changes.items():
        values = _merge(values, _nest(dotted, value))
    return _build(Config, values)


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    parts = dotted.split(".")
    out: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out
