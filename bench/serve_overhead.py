"""Three measurements of what a served request costs besides the recommender (bench/RESULTS.md, the serving issue):

    python bench/serve_overhead.py --run artifacts/latest stack     [--requests 2000 --rounds 3]
    python bench/serve_overhead.py --run artifacts/latest pauses    [--pauses 0 1 2 5 10 --seconds 8 --rounds 3]
        [--min-replicas 1]
    python bench/serve_overhead.py --run artifacts/latest floor     [--seconds 8 --rounds 3]
        [--min-replicas 1]

`stack`: known users' /recommend bodies driven through the app's ASGI stack in this process (no HTTP server, no
Serve), once through the `DirectRoutes` middleware and once with it left out so FastAPI's route answers, against the
bare `Recommender.recommend` call; the same `RecommenderServer` over the same run answers both (Serve's replica
context, which the routes ask for `self`, is stood in for). Medians per request after a warm-up, per round.

`pauses`: a stream of known users' /recommend requests, one at a time, with the client pausing before each
request, through the Serve app (started here as `serve_load.py` starts it: serve_config.yaml's settings) and in
process. It shows how much slower a request is after the machine idled, which a back-to-back in-process loop never
does.

`floor`: known users' /recommend bodies, one at a time and back to back, through a do-nothing app served as the
Recommender is (serve_config.yaml's env vars and the Recommender's deployment options). Its route reads the body and
answers one known user's answer (the same bytes every time), so what it takes is HAProxy, uvicorn, Serve's request
wrapper, the loopback hops and this client.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

sys.path.insert(0, str(Path(__file__).parent))
import serve_load  # noqa: E402 - the bench's request builder, client and app start-up


def known_user_bodies(run: str, n: int) -> list[dict]:
    return [body for _, _, body in serve_load.build_requests(run, {"recommend": 1.0}, 20, n)]


async def _asgi_post(stack, app, path: str, body: bytes) -> int:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "app": app,
             "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}
    sent, status = [False], []

    async def receive():
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await stack(scope, receive, send)
    return status[0]


def stack(run: str, requests: int, rounds: int) -> None:
    from ray import serve

    from ray_longtail.serve import ingress as serving
    from ray_longtail.serve.http import DirectRoutes

    server = serving.RecommenderServer.func_or_class.__mro__[1](run, encoder=None)
    api = serving.api
    with_direct = api.build_middleware_stack()
    everything = list(api.user_middleware)
    api.user_middleware = [m for m in everything if m.cls is not DirectRoutes]
    fastapi_only = api.build_middleware_stack()
    api.user_middleware = everything
    bodies = [json.dumps(b).encode() for b in known_user_bodies(run, 400)]
    parsed = [json.loads(b) for b in bodies]

    async def timed(call) -> float:
        times = []
        for i in range(requests):
            started = time.perf_counter()
            await call(i % len(bodies))
            times.append(time.perf_counter() - started)
        return statistics.median(times[requests // 10:]) * 1e6

    async def through(app_stack, i):
        assert await _asgi_post(app_stack, api, "/recommend", bodies[i]) == 200

    async def bare(i):
        server.rec.recommend(**parsed[i])

    with mock.patch.object(serve, "get_replica_context", lambda: SimpleNamespace(servable_object=server)):
        print("| round | direct routes us | FastAPI's route us | Recommender.recommend us |\n|---|---|---|---|")
        for r in range(rounds):
            cells = [asyncio.run(timed(lambda i, s=s: through(s, i))) for s in (with_direct, fastapi_only)]
            cells.append(asyncio.run(timed(bare)))
            print(f"| {r + 1} | " + " | ".join(f"{c:.0f}" for c in cells) + " |", flush=True)


async def _paused_stream(url: str, bodies: list[bytes], pause_ms: float, seconds: float) -> tuple[float, float]:
    connection = serve_load.Connection(*serve_load.host_port(url))
    latencies, app_ms = [], []
    end, i = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        if pause_ms:
            await asyncio.sleep(pause_ms / 1e3)
        started = time.perf_counter()
        status, timing = await connection.post("/recommend", bodies[i % len(bodies)])
        latencies.append(time.perf_counter() - started)
        assert status == 200, status
        match = serve_load.TIMING.search(timing)
        app_ms.append(float(match.group(1)) if match else float("nan"))
        i += 1
    connection.close()
    return statistics.median(latencies) * 1e3, statistics.median(app_ms)


def _paused_in_process(bodies: list[dict], pause_ms: float, seconds: float, rec) -> float:
    latencies, end, i = [], time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        if pause_ms:
            time.sleep(pause_ms / 1e3)
        started = time.perf_counter()
        rec.recommend(**bodies[i % len(bodies)])
        latencies.append(time.perf_counter() - started)
        i += 1
    return statistics.median(latencies) * 1e3


def pauses(run: str, pause_list: list[float], seconds: float, rounds: int, min_replicas: int | None) -> None:
    from threadpoolctl import threadpool_limits

    from ray_longtail.serve.recommender import Recommender

    bodies = known_user_bodies(run, 4000)
    encoded = [json.dumps(b).encode() for b in bodies]
    url = serve_load.start_app(run, min_replicas)
    try:
        asyncio.run(_paused_stream(url, encoded, 0, 3))
        served = {p: [asyncio.run(_paused_stream(url, encoded, p, seconds)) for _ in range(rounds)]
                  for p in pause_list}
        replicas = serve_load.replicas(True)
    finally:
        serve_load.stop_app()
    rec = Recommender(run)
    with threadpool_limits(limits=1):  # as in a replica (Ray sets OMP_NUM_THREADS=1)
        _paused_in_process(bodies, 0, 2, rec)
        local = {p: [_paused_in_process(bodies, p, seconds, rec) for _ in range(rounds)] for p in pause_list}
    print(f"Recommender replicas: {replicas}; medians of each {seconds:.0f} s round\n")
    print("| pause before each request ms | Serve p50 ms | replica's own p50 ms | in process p50 ms |")
    print("|---|---|---|---|")
    for p in pause_list:
        print(f"| {p:g} | {', '.join(f'{s:.2f}' for s, _ in served[p])} | "
              f"{', '.join(f'{a:.2f}' for _, a in served[p])} | {', '.join(f'{x:.2f}' for x in local[p])} |")


def floor(run: str, seconds: float, rounds: int, min_replicas: int | None) -> None:
    # (no `from __future__ import annotations` in this file: Serve rebuilds the route in the replica from the
    # annotations the pickled class carries, and a string "Request" would not resolve there)
    from fastapi import FastAPI, Request
    from ray import serve
    from starlette.responses import Response

    from ray_longtail.serve.recommender import Recommender

    bodies = known_user_bodies(run, 4000)
    answer = json.dumps(Recommender(run).recommend(**bodies[0]), separators=(",", ":")).encode()
    encoded = [json.dumps(b).encode() for b in bodies]
    api = FastAPI()

    @serve.deployment
    @serve.ingress(api)
    class DoNothing:
        @api.post("/recommend")
        async def recommend(self, request: Request) -> Response:
            await request.body()
            return Response(answer, media_type="application/json")

    port, deployments = serve_load.start_serve()
    options = dict(deployments.get("Recommender") or {})
    if min_replicas:
        options["autoscaling_config"] = {**options.get("autoscaling_config", {}), "min_replicas": min_replicas,
                                         "max_replicas": min_replicas}
    try:
        serve.run(DoNothing.options(**options).bind(), name=serve_load.APP, route_prefix="/",
                  logging_config={"enable_access_log": False})
        url = f"http://127.0.0.1:{port}"
        asyncio.run(_paused_stream(url, encoded, 0, 3))
        served = [asyncio.run(_paused_stream(url, encoded, 0, seconds))[0] for _ in range(rounds)]
        replicas = serve.status().applications[serve_load.APP].deployments["DoNothing"].replica_states
    finally:
        serve_load.stop_app()
    print(f"do-nothing app replicas: {replicas.get('RUNNING', 0)}; answer {len(answer)} bytes; medians of each "
          f"{seconds:.0f} s round\n")
    print("| round | do-nothing app p50 ms |\n|---|---|")
    for r, p50 in enumerate(served, 1):
        print(f"| {r} | {p50:.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("what", choices=["stack", "pauses", "floor"])
    parser.add_argument("--requests", type=int, default=2000, help="stack: requests per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pauses", type=float, nargs="*", default=[0, 1, 2, 5, 10])
    parser.add_argument("--seconds", type=float, default=8.0, help="pauses, floor: seconds per round (and pause)")
    parser.add_argument("--min-replicas", type=int,
                        help="pauses, floor: Recommender replicas (default: serve_config's)")
    args = parser.parse_args(argv)
    from ray_longtail.artifacts import resolve_run

    run = resolve_run(args.run)
    print(f"# {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; command: python {' '.join(sys.argv)}", flush=True)
    if args.what == "stack":
        stack(run, args.requests, args.rounds)
    elif args.what == "floor":
        floor(run, args.seconds, args.rounds, args.min_replicas)
    else:
        pauses(run, args.pauses, args.seconds, args.rounds, args.min_replicas)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
