"""Ray Serve app over a real finished run: every endpoint over HTTP, equality with the batch pipeline's
recommendations, items added online (searchable at once, kept across an app restart), the documented 4xx for bad
requests, and recovery from a killed Recommender replica. One app per module on the session's Ray cluster."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pandas as pd
import pytest
import yaml
from conftest import REPO, free_port
from fastapi import Request

from ray_longtail.errors import UserError
from ray_longtail.serve.http import Answer
from ray_longtail.serve.schemas import (  # module level: the test app's route annotations are resolved here
    ItemsResponse,
    RecommendRequest,
    RecommendResponse,
    SimilarRequest,
    SimilarToItem,
)

APP = "ray_longtail_test"
TOKEN_ENV, TOKEN = "RAY_LONGTAIL_TEST_TOKEN", "test-token-0f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VARIANTS = [{"name": "control", "share": 0.5}, {"name": "tw0", "share": 0.5, "tail_weight": 0.0}]  # an A/B test
NEW_ITEMS = [
    {"item_id": "SERVE-NEW-1", "title": "Glow in the dark dinosaur night light",
     "description": "USB powered lamp for a child's bedroom", "category": "lighting", "brand": "Rexlite",
     "price": 12.5},
    {"item_id": "SERVE-NEW-2", "title": "Hand carved wooden chess set", "category": "games"},
]


def wait_until(check, timeout: float, what: str, interval: float = 0.5):
    """Poll `check()` until it returns a truthy value (exceptions count as not yet); fail after `timeout` s."""
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


def deploy(run_dir: Path, **args):
    """The app with write protection on: POST /items needs `AUTH` (the token's digest is taken here, in the
    driver, from the variable that `serve.api_token_env` names)."""
    from ray import serve

    from ray_longtail.serve.app import build_app

    os.environ[TOKEN_ENV] = TOKEN
    app = build_app({"run": str(run_dir), "set": [f"serve.api_token_env={TOKEN_ENV}"], "variants": VARIANTS, **args})
    serve.run(app, name=APP, route_prefix="/", logging_config={"enable_access_log": False})


@pytest.fixture(scope="module")
def served(ray_head, pipeline_run, tmp_path_factory):
    """The app on a copy of the session's run (items added here must not leak into other tests' run)."""
    from ray import serve

    _, _, source = pipeline_run
    run_dir = tmp_path_factory.mktemp("served") / source.name
    shutil.copytree(source, run_dir)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    deploy(run_dir)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    yield SimpleNamespace(client=client, run_dir=run_dir, url=f"http://127.0.0.1:{port}")
    client.close()
    serve.shutdown()
    os.environ.pop(TOKEN_ENV, None)


def items_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]


# ------------------------------------------------------------------------------------------- without Ray
def test_latest_resolves_to_the_newest_finished_run(tmp_path, monkeypatch):
    from ray_longtail.artifacts import resolve_run

    for name, mtime in (("old", 1_000), ("new", 2_000), ("unfinished", 3_000)):
        (tmp_path / "artifacts" / name).mkdir(parents=True)
        (tmp_path / "artifacts" / name / "manifest.json").write_text("{}")
        if name != "unfinished":
            (tmp_path / "artifacts" / name / "metrics.json").write_text("{}")
            os.utime(tmp_path / "artifacts" / name / "metrics.json", (mtime, mtime))
    assert resolve_run(str(tmp_path / "artifacts" / "latest")) == str(tmp_path / "artifacts" / "new")
    monkeypatch.chdir(tmp_path)
    assert resolve_run("latest") == str(tmp_path / "artifacts" / "new")
    assert resolve_run("artifacts/old") == str(tmp_path / "artifacts" / "old")
    with pytest.raises(UserError, match="no finished run"):
        resolve_run(str(tmp_path / "empty" / "latest"))


def test_build_app_rejects_bad_args(tmp_path):
    from ray_longtail.serve.app import build_app

    with pytest.raises(UserError, match="unknown build_app args"):
        build_app({"run": "latest", "rum": 1})
    with pytest.raises(UserError, match="needs args.run"):
        build_app({})
    with pytest.raises(UserError, match="not a ray_longtail run"):
        build_app({"run": str(tmp_path / "nothing")})


def test_variants_are_checked_when_the_app_is_built(pipeline_run, tmp_path):
    """Bad variants fail in the driver, before any replica starts; a variant's run must share the encoder."""
    from ray_longtail.serve.app import build_app

    _, _, source = pipeline_run
    other = tmp_path / "other"
    shutil.copytree(source, other, ignore=shutil.ignore_patterns("added_items", "events"))
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["config"]["embed"]["model"] = "hashing"
    (other / "manifest.json").write_text(json.dumps(manifest))
    arms = [{"name": "a", "share": 1}, {"name": "b", "share": 1, "run": str(other)}]
    with pytest.raises(UserError, match="variants must share the encoder"):
        build_app({"run": str(source), "variants": arms})
    with pytest.raises(UserError, match="rerank_method"):
        build_app({"run": str(source), "variants": [{"name": "a", "share": 1, "rerank_method": "best"}]})
    with pytest.raises(UserError, match="not a ray_longtail run"):
        build_app({"run": str(source), "variants": [{"name": "a", "share": 1, "run": str(tmp_path / "none")}]})
    assert build_app({"run": str(source), "variants": [{"name": "a", "share": 2, "run": str(source)}]}) is not None


@pytest.mark.parametrize("choice, gpus, encoder_device, local", [
    ("auto", 0.0, "cpu", True), ("auto", 1.0, "cuda", False), ("replica", 0.5, "cuda", True),
    ("deployment", 0.0, "cpu", False),
])
def test_encoder_placement_follows_serve_query_encoder_and_the_encoders_gpus(choice, gpus, encoder_device, local):
    from ray_longtail.config import load_config
    from ray_longtail.serve.encoder import encoder_placement

    config = load_config(overrides=[f"serve.query_encoder={choice}", "embed.runtime=onnx"])
    encoder, replica = encoder_placement(config, "run", gpus)
    assert encoder["device"] == encoder_device
    assert encoder["runtime"] == ("torch" if gpus else "onnx")  # ONNX Runtime runs on CPU here
    assert (replica is not None) == local
    if replica:
        assert replica["device"] == "cpu" and replica["runtime"] == "onnx" and replica["num_threads"] == 1


def test_serve_config_yaml_is_a_valid_serve_config():
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    schema = ServeDeploySchema.parse_obj(config)
    assert schema.http_options.host == "127.0.0.1"
    (app,) = schema.applications
    assert app.import_path == "ray_longtail.serve.app:build_app" and app.route_prefix == "/"
    assert app.runtime_env["env_vars"]["HF_HUB_OFFLINE"] == "1"
    deployments = {d.name: d for d in app.deployments}
    assert set(deployments) == {"Encoder", "Recommender"}
    for deployment in deployments.values():
        assert deployment.autoscaling_config["min_replicas"] >= 1
        assert 0 < deployment.ray_actor_options.num_cpus < 1


def test_cli_parses_serve():
    from ray_longtail.cli import build_parser

    args = build_parser().parse_args(["serve", "--run", "artifacts/x", "--port", "8123"])
    assert (args.command, args.run, args.host, args.port) == ("serve", "artifacts/x", "127.0.0.1", 8123)
    args = build_parser().parse_args(["serve", "--set", "serve.cache_users=10", "--set", "serve.added_sync_s=1"])
    assert args.set == ["serve.cache_users=10", "serve.added_sync_s=1"] and args.serve_config is None


def test_serve_settings_come_from_serve_config_yaml(tmp_path):
    """`ray-longtail serve` and the bench use the file's env vars and deployment options: the Serve fast paths
    (HAProxy ingress, throughput-optimised mode, replays of idempotent requests, Serve's HTTP metrics counted by the
    replicas) live there, not in a shell."""
    from ray_longtail.serve.launch import serve_config_path, serve_settings

    assert (REPO / "serve_config.yaml").resolve() == serve_config_path()
    env, deployments, args = serve_settings()
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert "empty-response" in env["RAY_SERVE_HAPROXY_RETRY_ON"] and env["HF_HUB_OFFLINE"] == "1"
    assert env["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "0"  # the replicas count Serve's HTTP metrics
    assert set(deployments) == {"Encoder", "Recommender"} and "name" not in deployments["Recommender"]
    assert deployments["Recommender"]["autoscaling_config"]["min_replicas"] == 2 and args["run"]
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"applications": [{"name": "x", "import_path": "somewhere:app"}]}))
    with pytest.raises(UserError, match="no application with import_path"):
        serve_settings(other)
    with pytest.raises(UserError, match="cannot read"):
        serve_settings(tmp_path / "missing.yaml")


def test_openapi_constraints_are_json_schema_keywords():
    """Every request constraint reaches the document as JSON Schema (minimum/maximum, not pydantic's ge/le, which
    clients and fuzzers ignore), and every error answer is the one ErrorResponse model."""
    from ray_longtail.serve.ingress import api

    document = api.openapi()
    text = json.dumps(document)
    assert not re.findall(r'"(?:ge|le|gt|lt)":', text)
    assert "HTTPValidationError" not in text
    for path, operations in document["paths"].items():
        for operation in operations.values():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert answer["content"]["application/json"]["schema"] == \
                        {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)


def direct_routes_apps():
    """(app with DirectRoutes, the same app without, what each saw): FastAPI routes that delegate to one handler
    object, with the serving app's exception handlers plus a plain-function handler of status 409, and an
    outermost middleware that records the route and variant an answer carries out (as RequestMetrics reads them).
    `seen[name]["solved"]` counts FastAPI's dependency runs (the direct path skips them)."""
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    from ray_longtail.serve.http import DirectRoutes
    from ray_longtail.serve.ingress import user_error, validation_error

    seen = {name: {"solved": [], "labels": []} for name in ("direct", "plain")}

    class Handlers:
        async def recommend(self, req: RecommendRequest, request: Request) -> Answer:
            request.state.variant = "arm"
            if req.user_id == "user-error":
                raise UserError("no such thing")
            if req.user_id == "needs-token":
                raise HTTPException(401, "a bearer token, please", headers={"WWW-Authenticate": "Bearer"})
            if req.user_id == "taken":
                raise HTTPException(409, "taken")
            if req.user_id == "crash":
                raise RuntimeError("a bug")
            return Answer({"user_id": req.user_id, "k": req.k, "recent": list(req.recent())})

        async def similar(self, req: SimilarRequest) -> Answer:
            if isinstance(req, SimilarToItem) and req.item_id == "missing":
                raise HTTPException(404, "unknown item_id 'missing'")
            return Answer({"model": type(req).__name__, "k": req.k, "tail_only": req.tail_only})

    handlers = Handlers()

    def conflict(request, exc):  # a plain function: Starlette runs it in its thread pool
        return JSONResponse({"detail": f"conflict: {exc.detail}"}, status_code=409)

    def make(name: str) -> FastAPI:
        app, runs, labels = FastAPI(), seen[name]["solved"], seen[name]["labels"]
        app.add_exception_handler(RequestValidationError, validation_error)
        app.add_exception_handler(UserError, user_error)
        app.add_exception_handler(409, conflict)

        @app.post("/recommend", dependencies=[Depends(lambda: runs.append(1))])
        async def recommend(req: RecommendRequest, request: Request) -> Answer:
            return await handlers.recommend(req, request)

        @app.post("/similar", dependencies=[Depends(lambda: runs.append(1))])
        async def similar(req: SimilarRequest) -> Answer:
            return await handlers.similar(req)

        if name == "direct":
            app.add_middleware(DirectRoutes, servable=lambda: handlers,
                               routes={"/recommend": ("recommend", RecommendRequest),
                                       "/similar": ("similar", SimilarRequest)})

        @app.middleware("http")
        async def label(request, call_next):
            response = await call_next(request)
            labels.append((getattr(request.scope.get("route"), "path", None),
                           request.scope.get("state", {}).get("variant")))
            return response

        return app

    return make("direct"), make("plain"), seen


JSON = {"content-type": "application/json"}
DIRECT_CASES = [  # (path, body bytes, headers, answered by the direct path)
    ("/recommend", b'{"user_id": "u1", "k": 5}', JSON, True),
    ("/recommend", b'{"recent_items": ["a", {"item_id": "b", "timestamp": 1700000000}]}', JSON, True),
    ("/recommend", b'{"user_id": "u1", "k": 5.0, "tail_weight": 1}',
     {"content-type": "application/json; charset=utf-8"}, True),
    ("/similar", b'{"item_id": "i1", "tail_only": true}', JSON, True),
    ("/similar", b'{"text": "a lamp", "k": 3}', JSON, True),
    ("/recommend", b'{"user_id": "user-error"}', JSON, True),
    ("/recommend", b'{"user_id": "needs-token"}', JSON, True),
    ("/recommend", b'{"user_id": "taken"}', JSON, True),
    ("/similar", b'{"item_id": "missing"}', JSON, True),
    ("/recommend", b'{"user_id": "crash"}', JSON, True),
    ("/recommend", b'{"user_id": "u1", ', JSON, False),
    ("/recommend", b"[" * 5000 + b"]" * 5000, JSON, False),
    ("/recommend", b'{"user_id": 12}', JSON, False),
    ("/recommend", b'{"user_id": "u1", "k": "5"}', JSON, False),
    ("/recommend", b'[1, 2]', JSON, False),
    ("/recommend", b'\xff\xfe', JSON, False),
    ("/similar", b'{"item_id": "a", "text": "b"}', JSON, False),
    ("/recommend", b'{"user_id": "u1"}', {"content-type": "text/plain"}, False),
    ("/recommend", b'{"user_id": "u1"}', [("content-type", "text/plain"), ("content-type", "application/json")],
     False),
    ("/recommend", b'{"user_id": "u1"}', {"content-type": "application/vnd.api+json"}, False),
    ("/recommend", b'{"user_id": "u1"}', {}, False),
]


def test_direct_routes_answer_exactly_as_fastapi_does():
    """Every answer of the DirectRoutes fast path (valid bodies; the handler's HTTPException with headers, one with
    a status-code handler, UserError; a bug's 500) and of what it hands down (bad or too deeply nested JSON, failed
    validation, other or repeated content types) equals FastAPI's in status, headers and bytes, carries the same
    route and variant out to the middlewares above, and valid bodies after the first of each path skip FastAPI's
    routing and dependencies."""
    from fastapi.testclient import TestClient

    direct_app, plain_app, seen = direct_routes_apps()
    direct = TestClient(direct_app, raise_server_exceptions=False)
    plain = TestClient(plain_app, raise_server_exceptions=False)
    for path, body in (("/recommend", b'{"user_id": "u0"}'), ("/similar", b'{"item_id": "i0"}')):
        seen["direct"]["solved"].clear()
        assert direct.post(path, content=body, headers=JSON).status_code == 200
        assert len(seen["direct"]["solved"]) == 1  # the first valid request of a path went FastAPI's way
    for path, body, headers, skips_fastapi in DIRECT_CASES:
        for name in seen:
            seen[name]["solved"].clear(), seen[name]["labels"].clear()
        got, want = direct.post(path, content=body, headers=headers), plain.post(path, content=body, headers=headers)
        assert (got.status_code, got.content, got.headers.multi_items()) == \
            (want.status_code, want.content, want.headers.multi_items()), (path, body, headers)
        assert len(seen["direct"]["solved"]) == (0 if skips_fastapi else len(seen["plain"]["solved"])), (path, body)
        assert seen["direct"]["labels"] == seen["plain"]["labels"], (path, body)
    assert direct.post("/recommend", content=b'{"user_id": "crash"}', headers=JSON).status_code == 500
    assert direct.post("/recommend", content=b'{"user_id": "taken"}', headers=JSON).json() == \
        {"detail": "conflict: taken"}
    assert direct.get("/recommend").status_code == plain.get("/recommend").status_code == 405


def test_body_limit_answers_413_to_a_streamed_body_and_nothing_to_a_client_that_left():
    """A chunked body (no Content-Length) over the limit gets 413 without reaching the app; a body under it reaches
    the app whole, as one message; a client that leaves mid-body gets no answer and the app is not called."""
    import asyncio

    from ray_longtail.serve.http import BodyLimit

    def run(messages: list[dict]) -> tuple[list[int], list[bytes]]:
        seen, statuses = [], []

        async def app(scope, receive, send):
            seen.append((await receive())["body"])

        async def receive():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {"type": "http", "method": "POST", "path": "/search", "headers": []}
        asyncio.run(BodyLimit(app, max_bytes=1000)(scope, receive, send))
        return statuses, seen

    chunk = {"type": "http.request", "body": b"x" * 600, "more_body": True}
    assert run([chunk, {**chunk, "more_body": False}]) == ([413], [])
    assert run([chunk, {"type": "http.request", "body": b"y" * 300, "more_body": False}]) == \
        ([], [b"x" * 600 + b"y" * 300])
    assert run([chunk, {"type": "http.disconnect"}]) == ([], [])


def test_the_apps_direct_routes_are_its_fastapi_routes():
    """The serving app's DirectRoutes (innermost) names, for each path, the method FastAPI's POST route calls and the
    body type that method declares: a renamed handler or a changed body model fails here, not in production."""
    from typing import get_type_hints

    from ray_longtail.serve.http import DirectRoutes
    from ray_longtail.serve.ingress import RecommenderServer, api

    assert api.user_middleware[-1].cls is DirectRoutes
    document = api.openapi()["paths"]
    for path, (method, body_type) in api.user_middleware[-1].kwargs["routes"].items():
        assert document[path]["post"]["operationId"] == f"{method}_{path.strip('/')}_post"
        assert get_type_hints(getattr(RecommenderServer.func_or_class, method))["req"] == body_type


def test_answers_are_the_json_that_json_dumps_writes_and_refuse_non_finite_numbers():
    """Answer renders with orjson; numpy scalars and non-string keys read back as json.dumps writes them, a
    legitimate null stays, and NaN or infinity fails as json.dumps(allow_nan=False) does instead of turning null."""
    import numpy as np

    content = {"user_id": None, "items": [{"item_id": "a", "score": np.float64(0.25), "rank": np.int64(1)},
                                          {"item_id": "b", "score": 1e-05, "title": "nullable"}], "segment": {3: 1}}
    plain = {**content, "items": [{"item_id": "a", "score": 0.25, "rank": 1}, content["items"][1]]}
    assert json.loads(Answer(content).body) == json.loads(json.dumps(plain))
    for bad in (float("nan"), float("inf"), np.float64("-inf")):
        with pytest.raises(ValueError):
            Answer({"user_id": "u", "items": [{"item_id": "a", "score": bad}]})


def test_only_loopback_addresses_count_as_local():
    from ray_longtail.serve.http import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.8.0.1", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.20", "shop.example.com", ""]))


def test_serve_refuses_a_public_address_while_writes_are_open(pipeline_run, monkeypatch):
    """Before Ray starts: no token configured (or the variable named but empty) and a non-loopback host."""
    from ray_longtail.serve.launch import serve_forever

    _, _, run_dir = pipeline_run
    with pytest.raises(UserError, match="--allow-open-writes"):
        serve_forever(str(run_dir), host="0.0.0.0")
    monkeypatch.setenv("RAY_LONGTAIL_EMPTY_TOKEN", "")
    with pytest.raises(UserError, match="api_token_env"):
        serve_forever(str(run_dir), host="10.1.2.3", overrides=["serve.api_token_env=RAY_LONGTAIL_EMPTY_TOKEN"])


def test_serving_settings_cannot_change_the_run(pipeline_run):
    from ray_longtail.serve.recommender import Recommender

    _, _, run_dir = pipeline_run
    with pytest.raises(UserError, match="only serve"):
        Recommender(str(run_dir), ["rerank.depth=10"])
    assert Recommender(str(run_dir), ["serve.cache_users=3"]).config.serve.cache_users == 3


# ------------------------------------------------------------------------------------------- over HTTP
def test_health_metadata_and_openapi(served):
    client = served.client
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "run_id": served.run_dir.name}
    meta = client.get("/metadata").json()
    catalog = pd.read_parquet(served.run_dir / "catalog.parquet")
    assert meta["run_id"] == served.run_dir.name and meta["catalog"] == len(catalog)
    scorer = json.loads((served.run_dir / "metrics.json").read_text())["info"]["scorer"]
    assert meta["model"] and meta["ranker"] == scorer and set(meta["segments"]) <= {"head", "tail", "cold"}
    assert meta["precomputed_users"] == meta["users"]  # every history user's list comes from the batch job
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/similar", "/search", "/items", "/healthz", "/metadata"} <= set(paths)


def test_recommend_known_users_equals_the_batch_recommendations(served):
    recs = pd.read_parquet(served.run_dir / "recommendations.parquet")
    tail_weight = json.loads((served.run_dir / "metrics.json").read_text())["info"]["tail_weight"]
    users = recs["user_id"].drop_duplicates().sample(6, random_state=0)
    for user in users:
        response = served.client.post("/recommend", json={"user_id": str(user), "k": 20, "tail_weight": tail_weight})
        body = response.json()
        expected = recs[recs["user_id"] == user].sort_values("rank")
        assert items_of(response) == expected["item_id"].tolist(), user
        assert body["cold_start"] is False and body["user_id"] == str(user) and body["variant"] in {"control", "tw0"}
        assert [i["segment"] for i in body["items"]] == expected["segment"].tolist()
        assert all(i["title"] is not None and i["reason"] and i["source"] for i in body["items"])
        assert RecommendResponse.model_validate(body).items[0].item_id == expected["item_id"].iloc[0]
        assert response.headers["content-type"] == "application/json"


def test_recommend_unknown_users(served):
    client = served.client
    cold = client.post("/recommend", json={"user_id": "nobody-like-this", "k": 7})
    assert len(items_of(cold)) == 7 and cold.json()["cold_start"] is True
    catalog = pd.read_parquet(served.run_dir / "catalog.parquet")["item_id"].tolist()
    recent = client.post("/recommend", json={"user_id": "nobody-like-this", "k": 5, "recent_items": catalog[:3]})
    assert len(items_of(recent)) == 5 and recent.json()["cold_start"] is False
    assert not set(items_of(recent)) & set(catalog[:3])  # exclude_seen applies to the recent items
    unknown_recent = client.post("/recommend", json={"k": 5, "recent_items": ["no-such-item"]})
    assert unknown_recent.json()["cold_start"] is True


def test_similar_and_search(served):
    client = served.client
    catalog = pd.read_parquet(served.run_dir / "catalog.parquet")
    seed = catalog.iloc[0]
    similar = client.post("/similar", json={"item_id": seed["item_id"], "k": 5})
    assert len(items_of(similar)) == 5 and seed["item_id"] not in items_of(similar)
    assert len(ItemsResponse.model_validate(similar.json()).items) == 5  # answers are built without FastAPI's check
    scores = [i["score"] for i in similar.json()["items"]]
    assert scores == sorted(scores, reverse=True)
    tail = client.post("/similar", json={"item_id": seed["item_id"], "k": 10, "tail_only": True}).json()["items"]
    assert tail and all(i["segment"] != "head" for i in tail)
    by_text = client.post("/similar", json={"text": seed["title"], "k": 3})
    assert len(items_of(by_text)) == 3
    search = client.post("/search", json={"query": seed["title"], "k": 5})
    assert seed["item_id"] in items_of(search)


def test_replica_query_encoder_matches_the_encoder_deployment(served):
    """/search embeds its query in the Recommender replica (serve.query_encoder auto on CPU); the scores it
    returns are the catalog vectors' cosines to the Encoder deployment's vector for the same text."""
    import numpy as np
    import pyarrow.parquet as pq
    from ray import serve

    from ray_longtail.embed import table_to_vectors

    assert served.client.get("/metadata").json()["query_encoder"] == "replica"
    query = "wooden heart decoration for the garden"
    answer = served.client.post("/search", json={"query": query, "k": 5}).json()["items"]
    vector = np.asarray(serve.get_deployment_handle("Encoder", APP).embed.remote(query).result(), np.float32)
    ids, vectors = table_to_vectors(pq.read_table(served.run_dir / "item_embeddings.parquet"))
    cosine = dict(zip(ids, vectors @ vector, strict=True))
    assert len(answer) == 5
    np.testing.assert_allclose([i["score"] for i in answer], [cosine[i["item_id"]] for i in answer], atol=1e-4)
    assert [i["item_id"] for i in answer][0] == max(cosine, key=cosine.get)


def test_added_items_are_searchable_at_once_and_survive_a_restart(served):
    client = served.client
    added = client.post("/items", json={"items": NEW_ITEMS}, headers=AUTH)
    assert added.status_code == 200 and added.json()["added"] == 2, added.text
    assert items_of(client.post("/search", json={"query": "dinosaur night light", "k": 3}))[0] == "SERVE-NEW-1"
    assert "SERVE-NEW-2" in items_of(client.post("/search", json={"query": "wooden chess", "k": 3, "tail_only": True}))
    assert items_of(client.post("/similar", json={"item_id": "SERVE-NEW-2", "k": 3}))
    assert "SERVE-NEW-1" in items_of(client.post("/similar", json={"text": "dinosaur lamp", "k": 5}))
    assert client.get("/metadata").json()["added_items"] == 2

    from ray import serve

    serve.delete(APP)
    wait_until(lambda: client.get("/healthz").status_code == 404, 30, "the app to go away")
    deploy(served.run_dir)
    assert client.get("/metadata").json()["added_items"] == 2
    assert items_of(client.post("/search", json={"query": "dinosaur night light", "k": 3}))[0] == "SERVE-NEW-1"
    similar = client.post("/similar", json={"item_id": "SERVE-NEW-1", "k": 3})
    assert similar.status_code == 200 and "SERVE-NEW-1" not in items_of(similar)


BAD_REQUESTS = [
    ("malformed JSON", "/recommend", {"content": b'{"user_id": "1", ', "headers": {"content-type": "application/json"}},
     400),
    ("wrong type", "/recommend", {"json": {"user_id": 12347}}, 422),
    ("k too small", "/recommend", {"json": {"user_id": "u", "k": 0}}, 422),
    ("k too large", "/recommend", {"json": {"user_id": "u", "k": 101}}, 422),
    ("tail_weight out of range", "/recommend", {"json": {"user_id": "u", "tail_weight": 1.5}}, 422),
    ("unknown field", "/recommend", {"json": {"user": "u"}}, 422),
    ("not an object", "/recommend", {"json": [1, 2]}, 422),
    ("unknown item", "/similar", {"json": {"item_id": "no-such-item"}}, 404),
    ("item_id and text", "/similar", {"json": {"item_id": "a", "text": "b"}}, 422),
    ("neither item_id nor text", "/similar", {"json": {"k": 3}}, 422),
    ("blank text", "/similar", {"json": {"text": " \n\t"}}, 422),
    ("k as a string", "/similar", {"json": {"item_id": "a", "k": "3"}}, 422),
    ("fractional k", "/search", {"json": {"query": "lamp", "k": 2.5}}, 422),
    ("exclude_seen as a number", "/recommend", {"json": {"user_id": "u", "exclude_seen": 0}}, 422),
    ("recent item without a time", "/recommend", {"json": {"recent_items": [{"item_id": "a"}]}}, 422),
    ("recent time in milliseconds far ahead", "/recommend",
     {"json": {"recent_items": [{"item_id": "a", "timestamp": 10**15}]}}, 422),
    ("empty query", "/search", {"json": {"query": ""}}, 422),
    ("search k too large", "/search", {"json": {"query": "lamp", "k": 1000}}, 422),
    ("blank query", "/search", {"json": {"query": "   "}}, 422),
    ("missing query", "/search", {"json": {}}, 422),
    ("no items", "/items", {"json": {"items": []}}, 422),
    ("item without id", "/items", {"json": {"items": [{"title": "x"}]}}, 422),
    ("too many items", "/items", {"json": {"items": [{"item_id": f"x{i}", "title": "x"} for i in range(1001)]}}, 422),
    ("body over 1 MB", "/search", {"json": {"query": "x" * 1_100_000}}, 413),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_get_the_documented_4xx(served, case):
    _, path, kwargs, status = case
    kwargs = {**kwargs, "headers": {**AUTH, **kwargs.get("headers", {})}}
    response = served.client.post(path, **kwargs)
    assert response.status_code == status, response.text
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    documented = served.client.get("/openapi.json").json()["paths"][path]["post"]["responses"]
    assert str(status) in documented and "ErrorResponse" in json.dumps(documented[str(status)])
    assert served.client.get("/healthz").status_code == 200


def test_write_endpoints_need_the_bearer_token(served):
    item = {"items": [{"item_id": "SERVE-AUTH-1", "title": "Brass door knocker shaped like a fox"}]}
    missing = served.client.post("/items", json=item)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer", missing.text
    wrong = served.client.post("/items", json=item, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 403, wrong.text
    not_bearer = served.client.post("/items", json=item, headers={"Authorization": f"Basic {TOKEN}"})
    assert not_bearer.status_code == 401
    assert "SERVE-AUTH-1" not in items_of(served.client.post("/search", json={"query": "fox door knocker"}))
    assert served.client.post("/items", json=item, headers=AUTH).status_code == 200
    assert items_of(served.client.post("/search", json={"query": "fox door knocker", "k": 1})) == ["SERVE-AUTH-1"]
    security = served.client.get("/openapi.json").json()["paths"]["/items"]["post"]["security"]
    assert security == [{"HTTPBearer": []}]


def test_the_openapi_document_holds_under_schemathesis(served, tmp_path):
    """Schemathesis with every check against /openapi.json: no 5xx, every answer as documented (status, content
    type, body schema), every schema-valid request accepted and every invalid one rejected, the token enforced.
    A fixed seed and example budget; its report is printed on failure."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(REPO / "tests" / "schemathesis.toml"),
               "run", f"{served.url}/openapi.json", "--checks", "all",
               "--seed", "7", "--max-examples", "20", "--workers", "1", "--no-color",
               "--header", f"Authorization: Bearer {TOKEN}", "--report-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    report = re.sub(r"(.{1,12}?)\1{8,}", r"\1<...repeated>", done.stdout + done.stderr)  # fuzzed bodies are long
    (tmp_path / "schemathesis.txt").write_text(done.stdout + done.stderr)
    assert done.returncode == 0 and "No issues found" in done.stdout, report[-12000:]


def test_events_are_written_before_they_are_acknowledged(served):
    from ray_longtail.artifacts import open_run_store
    from ray_longtail.serve.events import EventLog

    log = EventLog(open_run_store(str(served.run_dir)))
    before = len(log.read())
    answer = served.client.post("/recommend", json={"user_id": "nobody-like-this", "k": 3}).json()
    assert re.fullmatch(r"[0-9a-f]{32}", answer["request_id"])
    shown = [{"user_id": "u-events", "item_id": item["item_id"], "event": "impression", "position": rank,
              "request_id": answer["request_id"], "variant": "A"} for rank, item in enumerate(answer["items"])]
    clicked = {"user_id": "u-events", "item_id": answer["items"][1]["item_id"], "event": "click", "ts": 1_700_000_000,
               "request_id": answer["request_id"], "variant": "A", "position": 1}
    response = served.client.post("/events", json={"events": [*shown, clicked]}, headers=AUTH)
    assert response.status_code == 200 and response.json()["accepted"] == 4, response.text
    logged = log.read().iloc[before:]
    assert logged["event"].tolist() == ["impression"] * 3 + ["click"]
    assert logged["position"].tolist() == [0, 1, 2, 1] and set(logged["request_id"]) == {answer["request_id"]}
    assert logged["timestamp"].iloc[-1] == 1_700_000_000 and logged["timestamp"].iloc[0] >= logged["received"].min()
    for bad, status in [({"events": [{**clicked, "event": "like"}]}, 422), ({"events": []}, 422),
                        ({"events": [{**clicked, "position": -1}]}, 422), ({"events": [clicked]}, 401)]:
        headers = AUTH if status != 401 else {}
        assert served.client.post("/events", json=bad, headers=headers).status_code == status
    assert len(log.read()) == before + 4  # nothing of the refused requests was written
    assert served.client.post("/recommend", json={"user_id": "nobody-like-this", "k": 3}).json()["request_id"] != \
        answer["request_id"]


def test_variants_are_sticky_and_answer_with_their_settings(served):
    """Each user keeps one variant; the tw0 arm answers at tail_weight 0 and the control at the run's weight, and
    /metadata lists both."""
    from ray_longtail.serve.variants import assign, parse_variants

    tail_weight = json.loads((served.run_dir / "metrics.json").read_text())["info"]["tail_weight"]
    users = pd.read_parquet(served.run_dir / "recommendations.parquet")["user_id"].astype(str).unique()[:16]
    arms = parse_variants(VARIANTS)
    for user in users:
        first, again = (served.client.post("/recommend", json={"user_id": user, "k": 3}).json() for _ in range(2))
        assert first["variant"] == again["variant"] == assign(arms, user, "ray_longtail").name
        assert first["tail_weight"] == (0.0 if first["variant"] == "tw0" else tail_weight)
    meta = served.client.get("/metadata").json()
    assert [(v["name"], v["share"], v["tail_weight"]) for v in meta["variants"]] == \
        [("control", 0.5, None), ("tw0", 0.5, 0.0)]
    assert meta["events_store"].endswith("/events")


def offline_hits(recommender, users: list[str], truth: dict[str, set], k: int, tail_weight: float | None):
    """(share of users with a test item in their top k, hits / shown) of the lists the run makes in process."""
    hit_users = hits = shown = 0
    for user in users:
        items = [i["item_id"] for i in recommender.recommend(user, k=k, tail_weight=tail_weight)["items"]]
        found = len(set(items) & truth[user])
        hit_users, hits, shown = hit_users + (found > 0), hits + found, shown + len(items)
    return hit_users / len(users), hits / shown


def test_replay_of_two_variants_matches_the_offline_metrics_of_their_lists(served, ray_head, tmp_path):
    """`ray-longtail replay` sends the test window through the app; per variant, the A/B report's share of users
    with a click is the offline HitRate@10 of the same lists and its CTR their precision."""
    from conftest import cli

    from ray_longtail.abtest import variant_report
    from ray_longtail.serve.events import open_events
    from ray_longtail.serve.recommender import Recommender

    started = int(time.time())
    done = cli(["replay", "--run", str(served.run_dir), "--url", served.url, "--max-users", "60",
                "--token-env", TOKEN_ENV, "-q"], ray_head, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["users"] == 60 and summary["failed_requests"] == 0 and summary["impression"] == 600
    events = open_events(str(served.run_dir)).read()
    replayed = events[(events["received"] >= started) & (events["request_id"].notna())]
    replayed = replayed[replayed["variant"].isin(["control", "tw0"])]
    assert len(replayed) == summary["events_written"] == summary["events"]
    report = variant_report(replayed)
    test = pd.read_parquet(served.run_dir / "split" / "test.parquet")
    truth = {str(u): set(rows["item_id"].astype(str)) for u, rows in test.groupby("user_id")}
    recommender = Recommender(str(served.run_dir))
    weights = {"control": None, "tw0": 0.0}
    for name, stats in report["variants"].items():
        users = sorted(replayed.loc[replayed["variant"] == name, "user_id"].unique())
        hit_rate, precision = offline_hits(recommender, users, truth, 10, weights[name])
        assert stats["users"] == len(users) > 10
        assert stats["click_users"]["value"] == pytest.approx(hit_rate, abs=1e-12)
        assert stats["ctr"]["value"] == pytest.approx(precision, abs=1e-12)
    out = tmp_path / "ab"
    shown = cli(["ab-report", "--events", str(served.run_dir), "--run", str(served.run_dir), "--out", str(out),
                 "--control", "control", "-q"], ray_head, timeout=120)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "tw0" in shown.stdout and (out / "ab_report.png").stat().st_size > 1000
    written = json.loads((out / "ab_report.json").read_text())
    assert written["comparisons"]["tw0"]["ctr"]["p_value"] is not None


def test_prometheus_endpoint_exposes_the_named_series(served, ray_head):
    """After traffic, Ray's metrics endpoint on the node carries the app's series, per endpoint and variant."""
    user = str(pd.read_parquet(served.run_dir / "recommendations.parquet")["user_id"].iloc[0])
    for _ in range(3):
        served.client.post("/recommend", json={"user_id": user, "k": 5})
    served.client.post("/recommend", json={"user_id": user, "k": "five"})
    wanted = ["ray_longtail_requests_total", "ray_longtail_request_latency_ms_bucket",
              "ray_longtail_recommendations_total", "ray_longtail_served_items_total",
              "ray_longtail_catalog_coverage_1h", "ray_longtail_events_total"]

    def exposed() -> str | None:
        text = httpx.get(f"http://127.0.0.1:{ray_head.metrics_port}/metrics", timeout=10).text
        return text if all(name in text for name in wanted) else None

    text = wait_until(exposed, 90, "the ray_longtail series on the metrics endpoint", interval=2)
    requests = [line for line in text.splitlines() if line.startswith("ray_longtail_requests_total{")]
    assert any('endpoint="/recommend"' in line and 'status="422"' in line for line in requests)
    assert any('endpoint="/recommend"' in line and 'status="200"' in line and 'variant="control"' in line
               or 'variant="tw0"' in line for line in requests)


def test_browse_endpoints(served):
    client = served.client
    users = client.get("/users", params={"limit": 5}).json()["users"]
    assert len(users) == 5 and users[0]["interactions"] >= users[-1]["interactions"]
    history = client.get(f"/users/{users[0]['user_id']}", params={"limit": 100}).json()
    train = pd.concat([pd.read_parquet(served.run_dir / "split" / f"{p}.parquet") for p in ("train", "valid")])
    mine = train[train["user_id"] == users[0]["user_id"]]
    assert history["interactions"] == mine["item_id"].nunique() == users[0]["interactions"]
    assert {i["item_id"] for i in history["items"]} <= set(mine["item_id"])
    last = mine.groupby("item_id")["timestamp"].max()
    shown = [last[i["item_id"]] for i in history["items"]]
    assert shown == sorted(shown, reverse=True) and shown[0] == last.max()  # most recent first
    assert client.get("/users/nobody-like-this").status_code == 404
    clusters = client.get("/clusters", params={"limit": 3}).json()["clusters"]
    assert len(clusters) == 3 and clusters[0]["tail_share"] >= clusters[-1]["tail_share"]
    assert all(i["segment"] != "head" for c in clusters for i in c["items"])
    page = client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN


def test_ui_page_in_a_real_browser(served, tmp_path):
    """Headless Chromium (Debian's package) loads /ui, picks a user, moves the tail_weight slider, searches with
    "tail only" and clicks an item; the page shows exactly what the JSON endpoints answer. Screenshots are saved
    in this test's tmp dir."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the browser test needs Debian's chromium package (make test installs it)"
    user = str(pd.read_parquet(served.run_dir / "recommendations.parquet")["user_id"].iloc[0])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors, urls = [], []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: urls.append(request.url))
        page.goto(f"{served.url}/ui")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        assert page.locator("#clusters .cluster").count() >= 3

        def ids(selector: str) -> list[str]:
            return page.eval_on_selector_all(selector, "els => els.map(e => e.dataset.itemId)")

        page.fill("#user", user)
        page.click("#show")
        page.wait_for_selector("#recs li.item")
        page.wait_for_selector("#history li.item")
        weight = float(page.input_value("#tail-weight"))
        api = served.client.post("/recommend", json={"user_id": user, "k": 10, "tail_weight": weight})
        assert ids("#recs li.item") == items_of(api)
        assert ids("#history li.item") == [i["item_id"] for i in served.client.get(
            f"/users/{user}", params={"limit": 20}).json()["items"]]
        page.screenshot(path=str(tmp_path / "ui-user.png"), full_page=True)

        page.focus("#tail-weight")
        page.keyboard.press("End")  # the slider to 1.0: the page re-asks /recommend
        page.wait_for_function("document.getElementById('recs').dataset.tailWeight === '1'")
        assert page.inner_text("#tail-weight-value") == "1.00"
        tail_api = served.client.post("/recommend", json={"user_id": user, "k": 10, "tail_weight": 1.0})
        assert ids("#recs li.item") == items_of(tail_api)

        page.fill("#query", "christmas decoration")
        page.check("#tail-only")
        page.click("#search")
        page.wait_for_selector("#search-results li.item")
        badges = page.eval_on_selector_all("#search-results .badge", "els => els.map(e => e.textContent)")
        assert badges and "head" not in badges
        first = ids("#recs li.item")[0]
        page.click("#recs li.item >> nth=0")
        page.wait_for_selector("#similar li.item")
        expected = served.client.post("/similar", json={"item_id": first, "k": 8})
        assert ids("#similar li.item") == items_of(expected)
        page.screenshot(path=str(tmp_path / "ui-search.png"), full_page=True)
        page.screenshot(path=str(tmp_path / "ui.png"))  # the viewport: the README's screenshot
        browser.close()
    assert not errors, errors
    assert all(url.startswith(served.url) for url in urls), [u for u in urls if not u.startswith(served.url)]
    assert (tmp_path / "ui-user.png").stat().st_size > 10_000


def test_killed_recommender_replica_is_replaced(served):
    import ray
    from ray import serve
    from ray.util.state import list_actors

    def replicas() -> list:
        return [a for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
                if a.class_name == f"ServeReplica:{APP}:Recommender"]

    from ray_longtail.serve.events import open_events

    logged = [{"user_id": "u-kill", "item_id": "any", "event": "click", "variant": "kill-test"}]
    assert served.client.post("/events", json={"events": logged}, headers=AUTH).status_code == 200
    (victim,) = replicas()
    ray.kill(ray.get_actor(victim.name, namespace="serve"), no_restart=True)
    body = {"user_id": "nobody", "k": 5}

    def recovered() -> bool:
        status = serve.status().applications[APP].deployments["Recommender"]
        alive = [a for a in replicas() if a.actor_id != victim.actor_id]
        if not alive or status.status != "HEALTHY":
            return False
        return served.client.post("/recommend", json=body).status_code == 200

    wait_until(recovered, 120, "a new healthy Recommender replica")
    for _ in range(10):
        assert served.client.post("/recommend", json=body).status_code == 200
    events = open_events(str(served.run_dir)).read()
    assert (events["variant"] == "kill-test").sum() == 1  # acknowledged before the kill = kept


def test_added_items_are_recommendable_as_cold_items(served):
    """A new item with the same text as a user's top recommendation is proposed to that user at once, as cold."""
    client = served.client
    user = str(pd.read_parquet(served.run_dir / "recommendations.parquet")["user_id"].iloc[0])
    top = client.post("/recommend", json={"user_id": user, "k": 5}).json()["items"][0]
    catalog = pd.read_parquet(served.run_dir / "catalog.parquet").set_index("item_id")
    row = catalog.loc[top["item_id"]]
    twin = {"item_id": "SERVE-TWIN", "title": str(row["title"]), "description": str(row["description"]),
            "category": str(row["category"]), "brand": str(row["brand"])}
    assert client.post("/items", json={"items": [twin]}, headers=AUTH).status_code == 200
    after = client.post("/recommend", json={"user_id": user, "k": 5}).json()["items"]
    found = [item for item in after if item["item_id"] == "SERVE-TWIN"]
    assert found and found[0]["segment"] == "cold", after


def test_adhoc_user_with_a_known_users_history_gets_that_users_list(pipeline_run):
    """An unknown user whose recent items (with their times) are a known user's history goes through the same
    sources, features, ranker and re-ranker, and gets exactly that user's list."""
    from ray_longtail.serve.recommender import Recommender

    _, _, run_dir = pipeline_run
    recommender = Recommender(str(run_dir))
    history = pd.concat([pd.read_parquet(run_dir / "split" / f"{part}.parquet") for part in ("train", "valid")])
    users = pd.read_parquet(run_dir / "recommendations.parquet")["user_id"].drop_duplicates()
    for user in users.sample(4, random_state=3):
        events = history[history["user_id"] == user]
        known = recommender.recommend(str(user), k=20)
        adhoc = recommender.recommend(None, k=20, recent_items=events["item_id"].tolist(),
                                      recent_timestamps=events["timestamp"].tolist())
        assert adhoc["cold_start"] is False
        assert [i["item_id"] for i in adhoc["items"]] == [i["item_id"] for i in known["items"]], user
        assert [i["score"] for i in adhoc["items"]] == pytest.approx([i["score"] for i in known["items"]], rel=1e-5)


def test_refresh_warms_a_cold_item_and_a_redeploy_serves_it_without_downtime(served, ray_head, tmp_path):
    """Purchases of a cold item logged through /events, `ray-longtail refresh`, then a redeploy of the app on the
    new run under load: no request fails (two Recommender replicas: Serve replaces one while the other answers),
    and the new app serves the item as warm, in its buyers' histories."""
    import threading

    from conftest import cli

    segments = pd.read_parquet(served.run_dir / "item_segments.parquet")
    cold_item = str(segments.loc[segments["segment"] == "cold", "item_id"].iloc[0])
    buyers = pd.read_parquet(served.run_dir / "recommendations.parquet")["user_id"].astype(str).unique()[:4].tolist()
    cut = json.loads((served.run_dir / "split" / "cuts.json").read_text())["cut_test"]
    bought = [{"user_id": u, "item_id": cold_item, "event": "purchase", "ts": cut + 3600} for u in buyers]
    assert served.client.post("/events", json={"events": bought}, headers=AUTH).status_code == 200
    refreshed = tmp_path / "refreshed"
    done = cli(["refresh", "--run", str(served.run_dir), "--events", str(served.run_dir), "--out", str(refreshed),
                "-q"], ray_head, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[0])["became_warm"] >= 1
    warm = pd.read_parquet(refreshed / "item_segments.parquet").set_index("item_id").loc[cold_item, "segment"]
    assert warm != "cold"

    failures, answered, stop = [], [0], threading.Event()

    def load() -> None:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    response = client.post("/recommend", json={"user_id": buyers[0], "k": 5})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if response.status_code == 200:
                    answered[0] += 1
                else:
                    failures.append(response.status_code)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        deploy(refreshed, recommender_options={"autoscaling_config": {"min_replicas": 2, "max_replicas": 2}})
        wait_until(lambda: served.client.get("/metadata").json()["run_id"] == "refreshed", 120, "the new run")
    finally:
        stop.set()
        thread.join()
    assert failures == [] and answered[0] > 10, failures[:5]
    title = str(pd.read_parquet(refreshed / "catalog.parquet").set_index("item_id").loc[cold_item, "title"])
    found = served.client.post("/search", json={"query": title, "k": 30}).json()["items"]
    assert [i["segment"] for i in found if i["item_id"] == cold_item] == [warm]
    history = served.client.get(f"/users/{buyers[0]}").json()["items"]
    assert cold_item in [i["item_id"] for i in history]


def test_recommend_command_imports_neither_serve_nor_fastapi():
    """`ray-longtail recommend` runs the recommender without Ray Serve or FastAPI (a plain batch user)."""
    import subprocess
    import sys

    code = ("import sys; import ray_longtail.cli, ray_longtail.serve.recommender; "
            "print(sorted(m for m in ('ray.serve', 'fastapi') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_run_without_serving_lists_answers_the_same_lists_on_demand(pipeline_run, tmp_path):
    """Known users without precomputed lists (a run made before the serving stage, or users beyond
    serve.precompute_users) go through the chain on first request and get the batch recommendations."""
    from ray_longtail.serve.recommender import Recommender

    _, _, source = pipeline_run
    run_dir = tmp_path / source.name
    shutil.copytree(source, run_dir, ignore=shutil.ignore_patterns("added_items"))
    (run_dir / "serving" / "ranked.parquet").unlink()
    recommender = Recommender(str(run_dir))
    assert recommender.metadata()["precomputed_users"] == 0
    recs = pd.read_parquet(run_dir / "recommendations.parquet")

    for user, expected in list(recs.groupby("user_id"))[:8]:
        expected = expected.sort_values("rank")
        answer = recommender.recommend(str(user), k=len(expected))
        assert [i["item_id"] for i in answer["items"]] == expected["item_id"].astype(str).tolist(), user


def test_known_users_at_an_exposure_weight_get_the_batch_lists(pipeline_run):
    """Above `rerank.exposure_from` a list depends on the exposure of the population's lists: the batch job stores
    the path it counted (serving/exposure.npz), evaluates with it, and a served user re-ranked with it gets the
    batch job's list at that tail_weight."""
    import numpy as np

    from ray_longtail import scoring
    from ray_longtail.artifacts import EXPOSURE_PATHS, open_run_store
    from ray_longtail.evaluate import system_metrics
    from ray_longtail.pipeline import RunContext
    from ray_longtail.precompute import ExposurePaths
    from ray_longtail.ranking_stages import ranked_candidates
    from ray_longtail.serve.recommender import Recommender, serving_config

    _, _, run_dir = pipeline_run
    store = open_run_store(str(run_dir))
    ctx = RunContext(serving_config(store), store)
    paths = ExposurePaths.from_bytes(store.read_bytes(EXPOSURE_PATHS))
    assert 0.9 in paths.weights.tolist() and 0.5 not in paths.weights.tolist()  # only where exposure costs
    phase = ctx.phase("eval")
    ranked = ranked_candidates(ctx, "eval", ctx.features("eval"), ctx.scorer(store.read_json("metrics.json")
                                                                             ["info"]["scorer"]))
    batch = scoring.phase_lists(phase, ranked, 0.9, ctx.config, path=paths.for_weight(0.9))
    recommender = Recommender(str(run_dir))
    for user in np.random.default_rng(0).choice(ranked.users, 8, replace=False):
        expected = batch[batch["user"] == user].sort_values("rank")
        answer = recommender.recommend(str(phase.history.user_ids[user]), k=20, tail_weight=0.9)
        assert [i["item_id"] for i in answer["items"]] == phase.history.item_ids[expected["item"]].tolist()
    assert json.loads((run_dir / "metrics.json").read_text())["tradeoff"]["0.9"]["ndcg@10"] == pytest.approx(
        system_metrics(phase, batch, ctx.config.eval.ks)["ndcg@10"])
