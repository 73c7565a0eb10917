"""Typed, frozen configuration: dataclass defaults < YAML file < CLI overrides (`--set a.b=v`).

`configs/default.yaml` documents every key. `load_config` and `replace` type-check values, reject unknown keys and
check each value against the constraint declared next to its field (`choice`, `number`) plus the cross-field rules
of each section's `validate` method, so a bad config fails with a `ConfigError` naming the dotted key before any
stage runs.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ray_longtail.errors import ConfigError
from ray_longtail.metrics import METRIC_NAMES
from ray_longtail.typed_config import InvalidValueError, build, choice, merge, nest, number, parse_overrides

# extend here when rerank.py learns a method
RERANK_METHODS: tuple[str, ...] = ("xquad_tail", "xquad", "calibrated", "mmr")
FEEDBACK_EVENT_TYPES: tuple[str, ...] = ("impression", "click", "add_to_cart", "purchase")  # what POST /events takes
EMBED_DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "cuda:<n>")  # "<n>" in an option stands for digits
EMBED_RUNTIMES: tuple[str, ...] = ("auto", "onnx", "torch")
QUERY_ENCODERS: tuple[str, ...] = ("auto", "replica", "deployment")
# higher-is-better metrics that metrics.ranking_metrics reports as "<metric>@<k>" (Gini is lower-is-better)
OBJECTIVE_METRICS: tuple[str, ...] = tuple(m for m in METRIC_NAMES if m != "gini")

@dataclass(frozen=True)
class DataConfig:
    items: str | None = None  # None = bundled Online Retail catalog
    interactions: str | None = None
    exclude_non_product: bool = True  # drop items with is_standard_stockcode == False when that column exists
    max_unknown_item_share: float = number(0.01, ge=0, le=1)  # above: DataError; below: rows dropped and counted
    events: list[str] = field(default_factory=list)  # keep only these event types; empty = all
    sample_users_fraction: float = number(1.0, gt=0, le=1)  # keep a seeded random share of users (quick runs, tests)


@dataclass(frozen=True)
class SplitConfig:
    test_days: float | None = number(30.0, gt=0)
    valid_days: float | None = number(None, gt=0)  # None = same length as the test window
    test_fraction: float | None = number(None, gt=0, lt=1)  # used when test_days is null
    valid_fraction: float | None = number(None, gt=0, lt=1)  # None = same as test_fraction

    def validate(self) -> None:
        """One of the two window definitions must be given, and fractions must leave a non-empty train window."""
        if self.test_days is None and self.test_fraction is None:
            raise InvalidValueError("test_days", None, "a number of days > 0 when test_fraction is null")
        if self.test_fraction is not None:
            valid = self.valid_fraction if self.valid_fraction is not None else self.test_fraction
            if self.test_fraction + valid >= 1:
                key = "valid_fraction" if self.valid_fraction is not None else "test_fraction"
                raise InvalidValueError(key, getattr(self, key), "such that test_fraction + valid_fraction < 1 "
                                        "(a null valid_fraction equals test_fraction)")


@dataclass(frozen=True)
class FinetuneConfig:
    enabled: bool = False  # fine-tune the encoder on co-interactions before embedding (finetune.py)
    window_days: float = number(30.0, gt=0)  # consecutive items of a user this close in time form a positive pair
    max_pairs: int = number(20_000, gt=0)  # a seeded sample when there are more
    holdout_share: float = number(0.1, ge=0, lt=1)  # pairs held out to report the contrastive loss on
    epochs: int = number(1, gt=0)
    batch_size: int = number(32, gt=1)  # pairs per step and worker (in-batch negatives: batch_size - 1)
    learning_rate: float = number(2e-5, gt=0)
    temperature: float = number(0.05, gt=0)
    logq_correction: bool = True  # subtract log popularity from in-batch logits (tail items are not pushed aside)
    num_workers: int = number(2, gt=0)  # Ray Train DDP workers
    cpus_per_worker: float = number(0.5, gt=0)
    use_gpu: bool = False  # one GPU per worker, bf16 autocast
    max_failures: int = number(2, ge=0)  # worker failures survived (resumed from the last epoch's checkpoint)


@dataclass(frozen=True)
class EmbedConfig:
    model: str = "sentence-transformers/all-MiniLM-L6-v2"  # or a local path, or "hashing" (weight-free, CPU-fast)
    text_fields: list[str] = field(default_factory=lambda: ["title", "category", "brand", "description"])
    max_length: int = number(128, gt=0)
    batch_size: int = number(64, gt=0)  # texts per forward pass
    block_size: int = number(1024, gt=0)  # rows per Ray Data batch handed to one actor call
    num_actors: int = number(1, gt=0)
    cpus_per_actor: float = number(2.0, gt=0)  # capped at the largest node's CPUs
    num_gpus_per_actor: float = number(0.0, ge=0)  # > 0 puts actors on GPUs (fp16); "auto" behaviour via device
    device: str = choice("auto", EMBED_DEVICES)  # auto | cpu | cuda | cuda:<n>
    runtime: str = choice("auto", EMBED_RUNTIMES)  # auto: ONNX Runtime on CPU, torch fp16 on CUDA
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def validate(self) -> None:
        """ONNX Runtime runs here on CPU only: `onnx` with a GPU device or GPU actors is a contradiction."""
        on_gpu = self.device.startswith("cuda") or self.num_gpus_per_actor > 0
        if self.runtime == "onnx" and on_gpu and self.model != "hashing":
            raise InvalidValueError("runtime", self.runtime, "auto or torch when device is cuda or "
                                    "num_gpus_per_actor > 0 (ONNX Runtime runs on CPU here; or set device=cpu)")


@dataclass(frozen=True)
class DiscoverConfig:
    head_share: float = number(0.2, gt=0, lt=1)
    n_clusters: int = number(32, gt=0)
    label_terms: int = number(4, gt=0)
    seed: int = number(0, ge=0)
    enrich_categories: bool = True  # predict empty categories from embeddings (enrich.py) when some are given
    enrich_min_confidence: float = number(0.6, ge=0, le=1)  # below: the prediction is reported, not used
    enrich_min_class_items: int = number(5, gt=1)  # categories with fewer labelled items are not predicted


@dataclass(frozen=True)
class ProfileConfig:
    half_life_days: float = number(90.0, gt=0)
    max_history: int = number(100, gt=0)


@dataclass(frozen=True)
class RetrieveConfig:
    # names are checked in Config.validate against the source registry (sources/registry.py)
    sources: list[str] = field(
        default_factory=lambda: ["content", "itemknn", "ease", "als", "popular", "tail_explore"])
    n_per_source: int = number(50, gt=0)
    user_batch_size: int = number(512, gt=0)
    use_ray: bool = True  # candidate generation on a Ray Data actor pool over user shards
    max_actors: int = number(2, gt=0)  # the pool autoscales from 1 to max_actors 1-CPU actors
    itemknn_neighbors: int = number(100, gt=0)
    ease_lambda: float = number(250.0, gt=0)
    ease_max_items: int = number(15000, gt=0)  # EASE inverts an items² matrix: larger catalogs use the most popular
    als_factors: int = number(64, gt=0)
    als_iterations: int = number(15, gt=0)
    als_regularization: float = number(0.05, ge=0)
    tail_explore_clusters: int = number(3, gt=0)


@dataclass(frozen=True)
class RankConfig:
    enabled: bool = True
    num_workers: int = number(2, gt=0)
    cpus_per_worker: float = number(0.5, gt=0)
    eta: float = number(0.1, gt=0)
    max_depth: int = number(6, gt=0)
    min_child_weight: float = number(1.0, ge=0)
    subsample: float = number(0.8, gt=0, le=1)
    ensemble_size: int = number(3, gt=0)  # boosters averaged into the ranker (seeds seed, seed + 1, ...)
    num_boost_round: int = number(200, gt=0)
    early_stopping_rounds: int = number(20, ge=0)
    last_n_history: int = number(20, gt=0)
    max_train_users: int = number(20000, gt=0)
    folds: int = number(3, gt=0)  # labelled windows for the ranker: the valid window and folds-1 earlier ones
    tail_positive_grade: int = number(1, ge=1, le=10)  # relevance grade of bought tail candidates (1 = as head)
    holdout_share: float = number(0.2, gt=0, lt=1)  # fit-phase users held out for early stopping and tail_weight
    crossfit_groups: int = number(4, ge=0)  # train users scored by rankers fit without them (crossfit.py)
    selection_min_users: int = number(5000, gt=0)  # groups join the held-out users until the choice has these
    score_on_ray: bool = True  # batch scoring as Ray Data map_batches
    ray_scoring_rows: int = number(100_000, ge=0)  # smaller frames are scored in process (same scores)
    storage_path: str | None = None  # Ray Train storage (must be shared on a multi-node cluster); None = temp


@dataclass(frozen=True)
class RerankConfig:
    tail_weight: float = number(0.3, ge=0, le=1)
    select_on_valid: bool = True  # pick tail_weight from eval.tail_weights on the valid window (see choose.py)
    ndcg_tolerance: float = number(0.03, ge=0, le=1)  # NDCG@10 >= (1 - tolerance) x the best weight's
    tail_tolerance: float = number(0.1, ge=0, le=1)  # TailRecall@10 within this of the most: a tie
    # the share of the chosen scorer's valid accuracy gain over the best single source spent on the tail
    surplus_share: float = number(0.5, ge=0, le=1)
    # spend from the lead's one-sided lower bound at this level (0.5: the measured lead; README "tail_weight")
    surplus_confidence: float = number(0.5, ge=0.5, lt=1)
    method: str = choice("xquad_tail", RERANK_METHODS)
    depth: int = number(200, gt=0)
    exposure_strength: float = number(1.0, ge=0)  # cost of exposure at tail_weight 1 (0 = off); rerank.py
    exposure_from: float = number(0.5, ge=0, lt=1)  # tail_weight up to which exposure costs nothing
    exposure_users: int = number(20000, gt=0)  # users sampled to count exposure (the path serving replays)


@dataclass(frozen=True)
class EvalConfig:
    ks: list[int] = number([10, 20], gt=0)
    exclude_seen: bool = True
    max_users: int | None = number(None, gt=0)  # evaluate a seeded sample of at most this many users (None = all)
    baselines: list[str] = field(  # sources reported alone in the quality table (fitted even if not in the union)
        default_factory=lambda: ["popular", "itemknn", "ease", "als", "content", "tail_explore"])
    tail_weights: list[float] = number([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], ge=0, le=1)

    def validate(self) -> None:
        """Metrics are reported per K, and tail_weight selection and tuning choose among tail_weights."""
        if not self.ks:
            raise InvalidValueError("ks", self.ks, "a non-empty list of positive cut-offs")
        if not self.tail_weights:
            raise InvalidValueError("tail_weights", self.tail_weights, "a non-empty list of weights in [0, 1]")


@dataclass(frozen=True)
class TuneConfig:
    num_samples: int = number(12, gt=0)
    max_concurrent: int = number(1, gt=0)
    tail_recall_floor_ratio: float = number(2.0, ge=0)  # floor = ratio × ItemKNN's TailRecall@10 on valid
    objective: str = "ndcg@10"  # metric maximised subject to the tail-recall floor (checked in Config.validate)
    seed: int = number(0, ge=0)


@dataclass(frozen=True)
class RayConfig:
    address: str | None = None  # None = RAY_ADDRESS if set, else a new local instance; "auto" = a `ray start` one
    num_cpus: int | None = number(None, gt=0)
    object_store_memory_mb: int | None = number(None, gt=0)


@dataclass(frozen=True)
class ServeConfig:
    # history users (most recently active first) whose ranked candidates the `serving` stage precomputes; a known
    # user's request then only re-ranks. ~1.8 KB each in every Recommender replica (180 MB per 10^5 users)
    precompute_users: int = number(100_000, ge=0)
    precompute_days: float | None = number(365.0, gt=0)  # only users active within this many days; None = any
    precompute_chunk_users: int = number(20_000, gt=0)  # users per chunk of that stage (bounds its memory)
    precompute_ray_users: int = number(10_000, ge=0)  # smaller chunks run in process (a pool's start-up costs more)
    cache_users: int = number(50_000, ge=0)  # LRU of on-demand ranked candidates per replica (users not precomputed)
    added_sync_s: float = number(2.0, gt=0)  # how often a replica looks for items added by other replicas
    # name of an environment variable holding the bearer token that write endpoints (POST /items) require; when
    # None or unset, writes are open and `ray-longtail serve` binds only to loopback unless told otherwise
    api_token_env: str | None = None
    events_store: str | None = None  # where POST /events writes (folder or URI); None = <run>/events
    assignment_salt: str = "ray_longtail"  # A/B assignment = hash(salt, user_id): a new salt reshuffles users
    # who embeds the query text of /search and /similar-by-text: each Recommender replica itself on CPU (no call
    # to another process), or the Encoder deployment; auto = the replica when the Encoder has no GPU. The texts of
    # POST /items always go to the Encoder.
    query_encoder: str = choice("auto", QUERY_ENCODERS)


@dataclass(frozen=True)
class FeedbackConfig:
    # an events store (a run folder's events/, or any folder/URI of POST /events segments) whose events
    # `ray-longtail run --events` folds into the interactions; None = none
    events: str | None = None
    event_types: list[str] = choice(["purchase"], FEEDBACK_EVENT_TYPES)  # logged events that count as interactions


@dataclass(frozen=True)
class PrivacyConfig:
    pseudonymize_users: bool = False
    key_env: str = "RAY_LONGTAIL_PSEUDONYM_KEY"


@dataclass(frozen=True)
class Config:
    artifacts: str = "artifacts"
    run_id: str | None = None  # None = a name derived from inputs + time
    seed: int = number(0, ge=0)
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
    serve: ServeConfig = field(default_factory=ServeConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    def validate(self) -> None:
        """The one place for rules spanning sections (keys here are full dotted keys)."""
        _check_objective(self.tune.objective, self.eval.ks)
        from ray_longtail.sources.registry import check_source_names  # the registry imports this module

        check_source_names(self.retrieve.sources, "retrieve.sources")
        check_source_names(self.eval.baselines, "eval.baselines")
        if not self.retrieve.sources:
            raise InvalidValueError("retrieve.sources", self.retrieve.sources, "at least one source")


def _check_objective(objective: str, ks: list[int]) -> None:
    """tune.objective must name a metric that evaluation actually reports, i.e. `<metric>@<k>` with k in eval.ks."""
    match = re.fullmatch(r"([a-z_]+)@([1-9][0-9]*)", objective)
    if not match or match[1] not in OBJECTIVE_METRICS or int(match[2]) not in ks:
        raise InvalidValueError("tune.objective", objective, f"<metric>@<k> with metric one of "
                           f"{', '.join(OBJECTIVE_METRICS)} and k one of eval.ks {ks}")


def default_config_path() -> Path:
    """The commented YAML shipped with the package (also at the repo's `configs/default.yaml`)."""
    return Path(__file__).parent / "configs" / "default.yaml"


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
    values = merge(values, extra or {})
    values = merge(values, parse_overrides(overrides or []))
    return build(Config, values)


def config_to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def replace(config: Config, **changes: Any) -> Config:
    """`replace(cfg, **{"rerank.tail_weight": 0.0})`: a copy with dotted keys changed, checked like `load_config`."""
    values = config_to_dict(config)
    for dotted, value in changes.items():
        values = merge(values, nest(dotted, value))
    return build(Config, values)
