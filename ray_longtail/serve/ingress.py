"""The HTTP ingress deployment `RecommenderServer` (FastAPI on Ray Serve) over one finished run: each route checks
its request (`schemas.py`), answers with `recommender.Recommender` (the batch pipeline's own code path), and
embeds texts with this replica's query encoder or the `Encoder` deployment (`encoder.py`). Bad input gets a 4xx
with a message, never a 5xx; the middleware (`http.py`) limits bodies, times and counts every answer.
"""

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from ray import serve
from ray.serve.handle import DeploymentHandle

from ray_longtail import __version__
from ray_longtail.errors import StorageError, UserError
from ray_longtail.serve import browse
from ray_longtail.serve.encoder import run_encoder
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

log = logging.getLogger(__name__)

UI_PAGE = Path(__file__).with_name("static") / "ui.html"
MAX_CLUSTERS = 32  # /clusters lists at most this many

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
