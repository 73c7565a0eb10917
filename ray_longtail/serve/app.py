"""The Ray Serve application: `build_app` binds an `Encoder` deployment (text -> vector, request batching:
`encoder.py`) and the `Recommender` deployment (the FastAPI ingress `RecommenderServer`: `ingress.py`) that answers
with `serve.recommender.Recommender` for one finished run, the same code path as the batch pipeline.

    serve run serve_config.yaml                    # the config at the repo root
    ray-longtail serve --run artifacts/latest      # the same app from the CLI (`launch.serve_forever`)

`build_app({"run": ...})` takes a run folder or URI; `latest` (or `<artifacts>/latest`) means the run under
`artifacts/` (or `<artifacts>/`) whose metrics.json was written last. The known-user path of /recommend never
calls the Encoder; /items does, and /search and /similar with text do when `serve.query_encoder` resolves to
`deployment` (a GPU Encoder); otherwise each Recommender replica embeds their one text itself.
"""

import logging
from typing import Any

from ray_longtail.artifacts import open_run_store, resolve_run
from ray_longtail.errors import UserError
from ray_longtail.finetune import ENCODER_DIR
from ray_longtail.serve.encoder import Encoder, encoder_placement
from ray_longtail.serve.http import token_digest
from ray_longtail.serve.ingress import RecommenderServer
from ray_longtail.serve.variants import parse_variants

log = logging.getLogger(__name__)

APP_NAME = "ray_longtail"
IMPORT_PATH = f"{__name__}:build_app"  # the Serve config's import_path of this app
BUILD_ARGS = {"run", "set", "variants", "num_gpus", "encoder_threads", "encoder_options", "recommender_options"}


def run_config(run: str, overrides: list[str] | None = None):
    """The resolved config of a finished run with serve.* `overrides` (raises UserError when it is not one)."""
    from ray_longtail.serve.recommender import serving_config

    store = open_run_store(run)
    if not store.exists("metrics.json"):
        raise UserError(f"run {run} is not finished (no metrics.json): finish it with `ray-longtail run`")
    return serving_config(store, overrides)


def build_app(args: dict[str, Any]):
    """Serve application builder (`import_path: ray_longtail.serve.app:build_app`).

    args: `run` (run folder or URI, or `latest` / `<artifacts>/latest`; required), `set` (a list of
    `serve.<key>=<value>` settings over the run's config, e.g. `["serve.cache_users=10000"]`), `variants` (A/B
    arms: a list of {name, share, run?, tail_weight?, rerank_method?}, `variants.py`), `num_gpus` (GPU
    share of each Encoder replica; default: the run's `embed.num_gpus_per_actor`), `encoder_threads` (torch
    threads per Encoder replica, default 1), `encoder_options` / `recommender_options` (dicts for
    `Deployment.options`, e.g. `{"autoscaling_config": {...}}`, for Python callers). Deployment options
    (autoscaling, ray_actor_options, max_ongoing_requests) come from the deployments' decorators (`encoder.py`,
    `ingress.py`); serve_config.yaml overrides them per deployment.
    """
    args = dict(args or {})
    unknown = set(args) - BUILD_ARGS
    if unknown:
        raise UserError(f"unknown build_app args {sorted(unknown)}; known: {sorted(BUILD_ARGS)}")
    if not args.get("run"):
        raise UserError("build_app needs args.run: a run folder, a URI or 'latest'")
    run = resolve_run(str(args["run"]))
    overrides = [str(o) for o in args.get("set") or []]
    config = run_config(run, overrides)
    variants = variant_args(args.get("variants"), run, overrides, config)
    num_gpus = float(args.get("num_gpus") if args.get("num_gpus") is not None else config.embed.num_gpus_per_actor)
    encoder_options = dict(args.get("encoder_options") or {})
    if num_gpus > 0:
        actor = dict(encoder_options.get("ray_actor_options") or {"num_cpus": 0.5})
        actor.setdefault("num_gpus", num_gpus)
        encoder_options["ray_actor_options"] = actor
    encoder = Encoder.options(**encoder_options) if encoder_options else Encoder
    recommender = RecommenderServer.options(**args["recommender_options"]) if args.get("recommender_options") \
        else RecommenderServer
    encoder_gpus = float((encoder_options.get("ray_actor_options") or {}).get("num_gpus") or 0)
    encoder_args, local_args = encoder_placement(config, run, encoder_gpus, int(args.get("encoder_threads", 1)))
    log.info("serving run %s (encoder %s on %s, query texts embedded by %s)", run, config.embed.model,
             encoder_args["device"], "each Recommender replica" if local_args else "the Encoder deployment")
    return recommender.bind(run, encoder.bind(**encoder_args), overrides, token_digest(config.serve.api_token_env),
                            variants, local_args)


def variant_args(raw: list[dict] | None, run: str, overrides: list[str], config) -> list[dict] | None:
    """`args.variants` validated in the driver (a typo fails the deploy, not the replicas) with each variant's
    `run` resolved; every run must be finished and share the app's encoder (one Encoder embeds for all)."""
    if not raw:
        return None
    variants = parse_variants(raw)
    resolved = []
    for variant in variants:
        variant_run = resolve_run(variant.run) if variant.run else None
        if variant_run and variant_run != run:
            embed = run_config(variant_run, overrides).embed
            tuned = {r: open_run_store(r).dir_complete(ENCODER_DIR) for r in (run, variant_run)}
            if (embed.model, embed.max_length) != (config.embed.model, config.embed.max_length) or any(tuned.values()):
                raise UserError(f"variant {variant.name!r}: its run {variant_run} embeds with {embed.model} "
                                f"(max_length {embed.max_length}), the app's run with {config.embed.model} "
                                f"(max_length {config.embed.max_length}), fine-tuned in the run: {tuned}; "
                                "variants must share the encoder")
        resolved.append({**variant.describe(run), "run": variant_run})
    return resolved
