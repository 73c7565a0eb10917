"""Ray Serve application: an `Encoder` deployment (text -> vector, request batching) and a `Recommender`
deployment (FastAPI ingress) that answers with `ray_longtail.recommend.Recommender` for one finished run, the same
code path as the batch pipeline.

    serve run serve_config.yaml                    # the config at the repo root
    ray-longtail serve --run artifacts/latest      # the same app from the CLI (`launch.serve_forever`)

`build_app({"run": ...})` takes a run folder or URI; `latest` (or `<artifacts>/latest`) means the run under
`artifacts/` (or `<artifacts>/`) whose metrics.json was written last. The known-user path of /recommend never
calls the Encoder; /items does, and /search and /similar with text do when `serve.query_encoder` resolves to
`deployment` (a GPU Encoder); otherwise each Recommender replica embeds their one text itself.
"""

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from ray import serve
from ray.serve.handle import DeploymentHandle

from ray_longtail import __version__
from ray_longtail.artifacts import open_run_store, resolve_run
from ray_longtail.config import Config
from ray_longtail.errors import StorageError, UserError
from ray_longtail.finetune import ENCODER_DIR
from ray_longtail.serve import browse
from ray_longtail.serve.events import EventLog, open_events
from ray_longtail.serve.http import (
    WRITE_ERRORS,
    Answer,
    BodyLimit,
    DirectRoutes,
    ServerTiming,
    bearer,
    check_token,
    token_digest,
    validation_message,
)
from ray_longtail.serve.monitor import VARIANT_STATE, RequestMetrics, ServeMetrics
from ray_longtail.serve.schemas import (
    ID_CHARS,
    MAX_BODY_BYTES,
    MAX_ITEMS_PER_REQUEST,
    MAX_K,
    AddItemsRequest,
    AddItemsResponse,
    ClustersResponse,
    ErrorResponse,
    EventsRequest,
    EventsResponse,
    Health,
    HistoryResponse,
    ItemsResponse,
    Metadata,
    RecommendRequest,
    RecommendResponse,
    SearchRequest,
    SimilarRequest,
    SimilarToItem,
    UsersResponse,
)
from ray_longtail.serve.variants import assign, parse_variants

if TYPE_CHECKING:
    from ray_longtail.embed import HashingEncoder, TextEncoder

log = logging.getLogger(__name__)

APP_NAME = "ray_longtail"
IMPORT_PATH = f"{__name__}:build_app"  # the Serve config's import_path of this app
UI_PAGE = Path(__file__).with_name("static") / "ui.html"
MAX_CLUSTERS = 32  # /clusters lists at most this many
BUILD_ARGS = {"run", "set", "variants", "num_gpus", "encoder_threads", "encoder_options", "recommender_options"}


def run_encoder(model: str, max_length: int = 128, device: str = "auto", num_threads: int = 1,
                run: str | None = None, runtime: str = "auto") -> tuple["TextEncoder | HashingEncoder", str]:
    """(encoder, label): the run's text encoder (its model, or the run's fine-tuned one, which wins over `model`) on
    `device` and `runtime`; `num_threads` torch or ONNX Runtime intra-op threads (0: the library's default)."""
    from ray_longtail.embed import make_encoder
    from ray_longtail.finetune import tuned_encoder_path

    tuned = tuned_encoder_path(open_run_store(run)) if run else None
    encoder = make_encoder(tuned or model, max_length=max_length, device=device, num_threads=num_threads or None,
                           runtime=runtime)
    return encoder, f"{model} (fine-tuned in the run)" if tuned else model


# ------------------------------------------------------------------------------------------------ run lookup
def run_config(run: str, overrides: list[str] | None = None):
    """The resolved config of a finished run with serve.* `overrides` (raises UserError when it is not one)."""
    from ray_longtail.serve.recommender import serving_config

    store = open_run_store(run)
    if not store.exists("metrics.json"):
        raise UserError(f"run {run} is not finished (no metrics.json): finish it with `ray-longtail run`")
    return serving_config(store, overrides)


api = FastAPI(title="ray_longtail", version=__version__,
              description="Long-tail aware recommendations, similar items and semantic search over one "
                          "ray_longtail run (Ray Serve). Bad requests get 4xx with a message.",
              responses={400: {"model": ErrorResponse, "description": "malformed JSON"},
                         413: {"model": ErrorResponse, "description": f"request body over {MAX_BODY_BYTES} bytes"},
                         422: {"model": ErrorResponse, "description": "a field is missing, of the wrong type or out "
                                                                      "of range (the message names it)"}})
ENCODER_DOWN = {503: {"model": ErrorResponse, "description": "the Encoder is unavailable: retry"}}


def ingress_instance() -> "RecommenderServer":
    """This replica's RecommenderServer (what Serve injects as `self` into the routes below)."""
    return serve.get_replica_context().servable_object


api.add_middleware(DirectRoutes, servable=ingress_instance,  # innermost: answers valid bodies of the hot routes
                   routes={"/recommend": ("recommend", RecommendRequest), "/similar": ("similar", SimilarRequest),
                           "/search": ("search", SearchRequest)})
api.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
api.add_middleware(ServerTiming)  # added after BodyLimit = outside it: 413s are timed too
api.add_middleware(RequestMetrics)  # outermost: every answer is counted


@api.exception_handler(RequestValidationError)
async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return JSONResponse({"detail": f"malformed JSON: {errors[0].get('ctx', {}).get('error', 'cannot parse')}"},
                            status_code=400)
    return JSONResponse({"detail": validation_message(errors)}, status_code=422)


@api.exception_handler(UserError)
async def user_error(request: Request, exc: UserError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=400)


# ------------------------------------------------------------------------------------------------ deployments
@serve.deployment(name="Encoder", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=32,
                  autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8,
                                      "upscale_delay_s": 2, "downscale_delay_s": 30})
class Encoder:
    """Text -> L2-normalised vector with the run's encoder (`embed.model`, `embed.max_length`; the transformer or
    the weight-free `hashing` encoder). Single query texts, when the Recommender sends them here (a GPU Encoder:
    `serve.query_encoder`), are batched across concurrent requests (`embed`); the texts of POST /items go
    through `embed_many`."""

    def __init__(self, model: str, max_length: int = 128, device: str = "auto", num_threads: int = 1,
                 run: str | None = None, runtime: str = "auto"):
        self.encoder, self.model = run_encoder(model, max_length, device, num_threads, run, runtime)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def embed(self, texts: list[str]) -> list[np.ndarray]:
        return list(self.encoder.encode(list(texts)))

    async def embed_many(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(list(texts))

    def info(self) -> dict[str, Any]:
        return {"model": self.model, "dim": self.encoder.dim, "device": self.encoder.device,
                "runtime": self.encoder.runtime}


@serve.deployment(name="Recommender", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64,
                  autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16,
                                      "upscale_delay_s": 2, "downscale_delay_s": 30})
@serve.ingress(api)
class RecommenderServer:
    """HTTP ingress over one run. Request handlers run on the replica's event loop one at a time (the
    `Recommender` is plain, single-threaded Python; running the scoring chain of ad-hoc users on a worker thread
    was measured and lost: bench/RESULTS.md); only the Encoder calls are awaited concurrently. A query text
    embedded by the replica itself (`serve.query_encoder`, ~4 ms on CPU) runs on the loop like the chain."""

    def __init__(self, run: str, encoder: DeploymentHandle, overrides: list[str] | None = None,
                 write_token_digest: str | None = None, variants: list[dict] | None = None,
                 local_encoder_args: dict[str, Any] | None = None):
        from ray_longtail.serve.recommender import Recommender

        self.run = run
        self.rec = Recommender(run, overrides)
        self.variants = parse_variants(variants)
        self.recs = {run: self.rec} | {v.run: Recommender(v.run, overrides) for v in self.variants
                                       if v.run not in (None, run)}
        self.encoder = encoder
        self.local_encoder = run_encoder(**local_encoder_args)[0] if local_encoder_args else None
        serve_config = self.rec.config.serve
        self.write_token_digest = write_token_digest or token_digest(serve_config.api_token_env)
        self.page = UI_PAGE.read_text(encoding="utf-8")
        self.event_log = open_events(serve_config.events_store, create=True) if serve_config.events_store else \
            EventLog(self.rec.store)
        self.clusters = browse.tail_clusters(self.rec, limit=MAX_CLUSTERS)
        self.added_files = {key: rec.added_log.listing() for key, rec in self.recs.items()}
        self.added_checked = time.monotonic()
        self.metrics = ServeMetrics(self.rec.catalog_items.n_catalog, [v.name for v in self.variants])

    # ---------------------------------------------------------------- helpers
    async def _embed(self, texts: list[str], query: bool = False) -> np.ndarray:
        """(len(texts), dim) vectors; a `query` (one text of /search or /similar) by this replica's own encoder
        when it has one, everything else by the Encoder deployment."""
        from ray.exceptions import RayError
        from ray.serve.exceptions import RayServeException

        if query and self.local_encoder is not None:
            return self.local_encoder.encode(texts)
        try:
            if query:
                return np.asarray(await self.encoder.embed.remote(texts[0]), np.float32)[None, :]
            return np.asarray(await self.encoder.embed_many.remote(texts), np.float32)
        except (RayError, RayServeException) as exc:
            log.warning("encoder call failed: %s", exc)
            raise HTTPException(503, f"encoder unavailable, retry: {type(exc).__name__}") from exc

    async def _sync_added(self) -> None:
        """Every `serve.added_sync_s`, pick up items that another replica (or a previous app) added to the run
        (the listing runs off the event loop: on s3:// it is a network call)."""
        if time.monotonic() - self.added_checked < self.rec.config.serve.added_sync_s:
            return
        self.added_checked = time.monotonic()
        for key, rec in self.recs.items():
            listing = await asyncio.to_thread(rec.added_log.listing)
            if listing != self.added_files[key]:
                rec.reload_added()
                self.added_files[key] = listing

    # ---------------------------------------------------------------- endpoints
    @api.post("/recommend", response_model=RecommendResponse,
              summary="top-k items for a user (known user, or unknown user with recent_items, or cold start)")
    async def recommend(self, req: RecommendRequest, request: Request) -> Answer:
        await self._sync_added()
        request_id = uuid.uuid4().hex
        variant = assign(self.variants, req.user_id or request_id, self.rec.config.serve.assignment_salt)
        setattr(request.state, VARIANT_STATE, variant.name)
        recent_items, recent_timestamps = req.recent()
        weight = req.tail_weight if req.tail_weight is not None else variant.tail_weight
        answer = self.recs[variant.run or self.run].recommend(
            req.user_id, k=req.k, exclude_seen=req.exclude_seen, tail_weight=weight, recent_items=recent_items,
            recent_timestamps=recent_timestamps, rerank_method=variant.rerank_method)
        answer.update(user_id=req.user_id, request_id=request_id, variant=variant.name)
        self.metrics.recommended(variant.name, answer["cold_start"], answer["items"])
        return Answer(answer)

    @api.post("/similar", response_model=ItemsResponse,
              responses={404: {"model": ErrorResponse, "description": "unknown item_id"}, **ENCODER_DOWN},
              summary="items nearest to an item (catalog or added) or to a text: exactly one of item_id and text")
    async def similar(self, req: SimilarRequest) -> Answer:
        await self._sync_added()
        if isinstance(req, SimilarToItem):
            try:
                return Answer(self.rec.similar(item_id=req.item_id, k=req.k, tail_only=req.tail_only))
            except KeyError as exc:
                raise HTTPException(404, f"unknown item_id {req.item_id!r}") from exc
        vector = (await self._embed([req.text], query=True))[0]
        return Answer(self.rec.similar(vector=vector, k=req.k, tail_only=req.tail_only))

    @api.post("/search", response_model=ItemsResponse, responses=ENCODER_DOWN,
              summary="semantic search over item texts")
    async def search(self, req: SearchRequest) -> Answer:
        vector = (await self._embed([req.query], query=True))[0]
        await self._sync_added()
        return Answer(self.rec.search(vector, k=req.k, tail_only=req.tail_only))

    @api.post("/items", response_model=AddItemsResponse, responses={**WRITE_ERRORS, **ENCODER_DOWN},
              summary=f"add or update items (at most {MAX_ITEMS_PER_REQUEST}): embedded, searchable at once, "
                      "persisted in the run")
    async def add_items(self, req: AddItemsRequest,
                        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> dict[str, Any]:
        import pandas as pd

        from ray_longtail.embed import item_texts

        check_token(credentials, self.write_token_digest)
        frame = pd.DataFrame([item.model_dump() for item in req.items])
        vectors = await self._embed(item_texts(frame, list(self.rec.config.embed.text_fields)))
        await self._sync_added()
        answers = [self._add_to(key, rec, frame, vectors) for key, rec in self.recs.items()]
        return (await asyncio.gather(*answers))[0]

    async def _add_to(self, key: str, rec, frame, vectors: np.ndarray) -> dict[str, Any]:
        """Add the items to one served run (every variant's run gets them: /items is not an experiment)."""
        before = self.added_files[key]
        answer = rec.add_items(frame, vectors)
        listing = await asyncio.to_thread(rec.added_log.listing)
        if len(listing - before) == 1 and before <= listing:  # only our own file is new: nothing to reload
            self.added_files[key] = listing
        return answer

    @api.post("/events", response_model=EventsResponse,
              responses={**WRITE_ERRORS, 503: {"model": ErrorResponse, "description": "events store unavailable"}},
              summary="log feedback events (impression, click, add_to_cart, purchase); acknowledged = written")
    async def events(self, req: EventsRequest,
                     credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Answer:
        check_token(credentials, self.write_token_digest)
        try:
            segment = await asyncio.to_thread(self.event_log.append, [e.model_dump() for e in req.events])
        except StorageError as exc:
            log.warning("events not written: %s", exc)
            raise HTTPException(503, "the events store cannot be written now; nothing was kept, retry") from exc
        self.metrics.accepted([{"event": e.event, "variant": e.variant} for e in req.events])
        return Answer({"accepted": len(req.events), "segment": segment})

    @api.get("/ui", response_class=HTMLResponse, include_in_schema=False)  # a page for people, not an API operation
    async def ui(self) -> HTMLResponse:
        return HTMLResponse(self.page)

    @api.get("/users", response_model=UsersResponse, summary="the most active history users (to pick one)")
    async def users(self, limit: Annotated[int, Query(ge=1, le=MAX_K)] = 30) -> Answer:
        return Answer({"users": browse.example_users(self.rec, limit)})

    @api.get("/users/{user_id}", response_model=HistoryResponse, summary="a known user's history, most recent first",
             responses={404: {"model": ErrorResponse, "description": "unknown user_id"}})
    async def history(self, user_id: Annotated[str, PathParam(min_length=1, max_length=ID_CHARS)],
                      limit: Annotated[int, Query(ge=1, le=MAX_K)] = 50) -> Answer:
        answer = browse.user_history(self.rec, user_id, limit)
        if answer is None:
            raise HTTPException(404, f"unknown user_id {user_id!r}")
        return Answer(answer)

    @api.get("/clusters", response_model=ClustersResponse,
             summary="the tail-heavy embedding clusters (largest tail share first) with example items")
    async def tail_clusters(self, limit: Annotated[int, Query(ge=1, le=MAX_CLUSTERS)] = MAX_CLUSTERS) -> Answer:
        return Answer({"clusters": self.clusters[:limit]})

    @api.get("/healthz", response_model=Health, summary="liveness")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "run_id": self.rec.store.run_id}

    @api.get("/metadata", response_model=Metadata, summary="the run being served")
    async def metadata(self) -> dict[str, Any]:
        await self._sync_added()
        config = self.rec.config
        return {**self.rec.metadata(), "run": self.run, "max_length": config.embed.max_length,
                "rerank_depth": config.rerank.depth, "events_store": self.event_log.uri,
                "query_encoder": "replica" if self.local_encoder is not None else "deployment",
                "variants": [v.describe(self.run) for v in self.variants]}


# ------------------------------------------------------------------------------------------------ entry points
def build_app(args: dict[str, Any]):
    """Serve application builder (`import_path: ray_longtail.serve.app:build_app`).

    args: `run` (run folder or URI, or `latest` / `<artifacts>/latest`; required), `set` (a list of
    `serve.<key>=<value>` settings over the run's config, e.g. `["serve.cache_users=10000"]`), `variants` (A/B
    arms: a list of {name, share, run?, tail_weight?, rerank_method?}, `variants.py`), `num_gpus` (GPU
    share of each Encoder replica; default: the run's `embed.num_gpus_per_actor`), `encoder_threads` (torch
    threads per Encoder replica, default 1), `encoder_options` / `recommender_options` (dicts for
    `Deployment.options`, e.g. `{"autoscaling_config": {...}}`, for Python callers). Deployment options
    (autoscaling, ray_actor_options, max_ongoing_requests) come from the decorators above; serve_config.yaml
    overrides them per deployment.
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


def encoder_placement(config: Config, run: str, encoder_gpus: float,
                      threads: int = 1) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(Encoder deployment args, each Recommender replica's own query-encoder args or None).

    The Encoder runs on CUDA when its replicas reserve GPUs (torch: ONNX Runtime runs on CPU here, and both execute
    the same graph), else on CPU with the run's `embed.runtime`. `serve.query_encoder` auto puts the query encoder
    in the replicas unless the Encoder has a GPU. Under `serve deploy`, GPUs set in the file's deployment options
    are not visible here: pass `args.num_gpus` (or set `serve.query_encoder=deployment`) with them."""
    on_gpu = encoder_gpus > 0
    runtime = "torch" if on_gpu and config.embed.runtime == "onnx" else config.embed.runtime
    if runtime != config.embed.runtime:
        log.warning("embed.runtime onnx runs on CPU only: the GPU Encoder runs the same graph on torch")
    encoder_args = {"model": config.embed.model, "max_length": config.embed.max_length,
                    "device": "cuda" if on_gpu else "cpu", "num_threads": threads, "run": run, "runtime": runtime}
    choice = config.serve.query_encoder
    local = choice == "replica" or (choice == "auto" and not on_gpu)
    local_args = {**encoder_args, "device": "cpu", "num_threads": 1, "runtime": config.embed.runtime} if local else None
    return encoder_args, local_args


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
