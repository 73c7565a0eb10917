"""Live monitoring of the Serve app through `ray.serve.metrics`: Ray exports every series on each node's
Prometheus endpoint (`ray start --metrics-export-port`), with Serve's own tags (deployment, replica, application)
added. Prometheus names carry Ray's `ray_` prefix:

    ray_longtail_requests_total{endpoint, variant, status}        requests by route template and HTTP status
    ray_longtail_request_latency_ms_bucket{endpoint, variant}     in-replica latency histogram (also _sum, _count)
    ray_longtail_recommendations_total{variant, cold_start}       /recommend answers (cold-start share)
    ray_longtail_served_items_total{variant, segment}             items shown (tail share = non-head / all)
    ray_longtail_catalog_coverage_1h{variant}                     share of the catalog shown in the last hour,
                                                                      per replica (take the max over replicas)
    ray_longtail_events_total{event, variant}                     feedback events accepted by POST /events

`RequestMetrics` is the ASGI middleware behind the first two (it sees every answer, 4xx included); `ServeMetrics`
holds the domain series of one Recommender replica. Outside a Ray worker (plain unit tests) both record nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

log = logging.getLogger(__name__)

LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
COVERAGE_WINDOW_S = 3600.0
COVERAGE_UPDATE_S = 5.0
PREFIX = "longtail"  # Ray prefixes "ray_": Prometheus sees ray_longtail_*
VARIANT_STATE = "variant"  # request.state key a handler sets for RequestMetrics


def _in_ray_worker() -> bool:
    import ray

    return ray.is_initialized()


class RequestMetrics:
    """ASGI middleware: one count (endpoint, variant, status) and one latency observation per HTTP answer. The
    endpoint is the matched route's template (`/users/{user_id}`), `unmatched` for unknown paths; the variant is
    what the handler put in `request.state.variant` (`-` for endpoints without variants)."""

    def __init__(self, app):
        self.app = app
        self.requests = self.latency = None
        if _in_ray_worker():
            from ray.serve import metrics

            self.requests = metrics.Counter(f"{PREFIX}_requests", "HTTP answers of the ray_longtail app",
                                            tag_keys=("endpoint", "variant", "status"))
            self.latency = metrics.Histogram(f"{PREFIX}_request_latency_ms",
                                             "time in the replica from request to response head (ms)",
                                             boundaries=LATENCY_BOUNDARIES_MS, tag_keys=("endpoint", "variant"))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.requests is None:
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def observed_send(message):
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
                try:
                    self._record(scope, status[0], start)
                except Exception:  # noqa: BLE001 - a metrics failure must never fail the answer
                    log.warning("request metrics not recorded", exc_info=True)
            await send(message)

        await self.app(scope, receive, observed_send)

    def _record(self, scope, status: int, start: float) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        variant = str((scope.get("state") or {}).get(VARIANT_STATE, "-"))
        self.requests.inc(tags={"endpoint": endpoint, "variant": variant, "status": str(status)})
        self.latency.observe((time.perf_counter() - start) * 1e3, tags={"endpoint": endpoint, "variant": variant})


class ServeMetrics:
    """The domain series of one Recommender replica: what it shows (segments, cold starts, catalog coverage of the
    last hour) and the feedback it accepts. `n_catalog`: items the coverage is a share of; `variants`: the app's
    arm names (an event's variant is client input: any other value is counted as `other`, so clients cannot grow
    the number of series)."""

    def __init__(self, n_catalog: int, variants: list[str]):
        self.n_catalog = max(int(n_catalog), 1)
        self.variants = frozenset(variants)
        self.last_shown: dict[str, dict[str, float]] = {}
        self.coverage_updated = 0.0
        self.enabled = _in_ray_worker()
        if not self.enabled:
            return
        from ray.serve import metrics

        self.recommendations = metrics.Counter(f"{PREFIX}_recommendations", "/recommend answers",
                                               tag_keys=("variant", "cold_start"))
        self.served_items = metrics.Counter(f"{PREFIX}_served_items", "items shown in /recommend answers",
                                            tag_keys=("variant", "segment"))
        self.coverage = metrics.Gauge(f"{PREFIX}_catalog_coverage_1h",
                                      "share of the catalog shown by this replica in the last hour",
                                      tag_keys=("variant",))
        self.events = metrics.Counter(f"{PREFIX}_events", "feedback events accepted", tag_keys=("event", "variant"))

    def recommended(self, variant: str, cold_start: bool, items: list[dict]) -> None:
        """One /recommend answer of `variant` showing `items` (dicts with item_id and segment)."""
        if not self.enabled:
            return
        now = time.monotonic()
        self.recommendations.inc(tags={"variant": variant, "cold_start": str(cold_start).lower()})
        for segment, count in Counter(item["segment"] for item in items).items():
            self.served_items.inc(count, tags={"variant": variant, "segment": segment})
        shown = self.last_shown.setdefault(variant, {})
        shown.update((item["item_id"], now) for item in items)
        if now - self.coverage_updated >= COVERAGE_UPDATE_S:
            self._update_coverage(now)

    def _update_coverage(self, now: float) -> None:
        """Forget items not shown within the window, then publish each variant's share (amortised: every
        COVERAGE_UPDATE_S seconds, one pass over the items shown in the last hour)."""
        self.coverage_updated = now
        for variant, shown in self.last_shown.items():
            for item in [i for i, seen in shown.items() if now - seen > COVERAGE_WINDOW_S]:
                del shown[item]
            self.coverage.set(len(shown) / self.n_catalog, tags={"variant": variant})

    def accepted(self, events: list[dict]) -> None:
        if not self.enabled:
            return
        arms = Counter((e["event"], e.get("variant") if e.get("variant") in self.variants else
                        "other" if e.get("variant") else "-") for e in events)
        for (event, variant), count in arms.items():
            self.events.inc(count, tags={"event": event, "variant": variant})
