"""The HTTP layer of the Serve app, apart from the endpoints: body-size limit, Server-Timing and direct-route
middlewares, the pre-shaped JSON answer, bearer-token write protection, and one-line messages for validation
errors."""

import hashlib
import hmac
import inspect
import ipaddress
import json
import os
import time
from typing import Any

import numpy as np
import orjson
from fastapi import HTTPException
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from ray_longtail.serve.schemas import MAX_BODY_BYTES, NON_BLANK, ErrorResponse, SimilarToItem, SimilarToText

UNION_MODELS = {SimilarToItem.__name__, SimilarToText.__name__}  # request bodies that are one of several models


# ------------------------------------------------------------------------------------------------ write protection
def token_digest(env_name: str | None) -> str | None:
    """sha256 hex of the bearer token in the environment variable `env_name` (`serve.api_token_env`), or None when
    it is not named or not set: then write endpoints are open. Only the digest travels to the replicas."""
    token = os.environ.get(env_name) if env_name else None
    return hashlib.sha256(token.encode()).hexdigest() if token else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>` for write endpoints, required "
                                                  "when the run's `serve.api_token_env` names a set variable")
WRITE_ERRORS = {401: {"model": ErrorResponse, "description": "no bearer token (the app has one configured)"},
                403: {"model": ErrorResponse, "description": "wrong bearer token"}}


def check_token(credentials: HTTPAuthorizationCredentials | None, digest: str | None) -> None:
    """401 without a bearer token, 403 with a wrong one; nothing when the app has no token (`digest` None)."""
    if digest is None:
        return
    if credentials is None:
        raise HTTPException(401, "this endpoint needs `Authorization: Bearer <token>` (serve.api_token_env)",
                            headers={"WWW-Authenticate": "Bearer"})
    presented = hashlib.sha256(credentials.credentials.encode()).hexdigest()
    if not hmac.compare_digest(presented, digest):
        raise HTTPException(403, "wrong bearer token")


class BodyLimit:
    """ASGI middleware: request bodies over `max_bytes` get 413 before any parsing (Content-Length or streamed)."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        try:
            body = await read_body(receive, self.max_bytes)
        except BodyTooLargeError:
            await self._too_large(scope, receive, send)
            return
        if body is not None:  # None: the client went away
            await self.app(scope, replaying(body, receive), send)

    async def _too_large(self, scope, receive, send):
        response = JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413)
        await response(scope, receive, send)


class ServerTiming:
    """ASGI middleware: `Server-Timing: app;dur=<ms>` on every response = time in this replica's app until the
    response head (the rest of a client's latency is the proxy, routing and the network)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message):
            if message["type"] == "http.response.start":
                timing = f"app;dur={(time.perf_counter() - start) * 1e3:.2f}".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"server-timing", timing)]}
            await send(message)

        await self.app(scope, receive, timed_send)


class DirectRoutes:
    """ASGI middleware, innermost: a POST to one of `routes` ({path: (handler method name, body type)}) whose JSON
    body validates against the type its FastAPI route validates it against is answered by that method of the
    ingress instance (`servable()`: what Serve injects as `self`) without FastAPI's routing, dependency solving and
    exception middleware: 0.12-0.13 ms less per /recommend (bench/RESULTS.md). Anything else (another path or method,
    another content type, a body that is not JSON or does not validate) goes down to FastAPI unchanged, so every
    validation error is FastAPI's; so does the first valid request of each path (FastAPI's router names the route,
    which the middlewares outside label answers with). An exception of the handler is answered by the handler
    Starlette's exception middleware would pick (HTTPException, UserError); any other goes up to the 500 handler."""

    def __init__(self, app, routes: dict[str, tuple[str, Any]], servable):
        self.app = app
        self.routes = {path: (method, TypeAdapter(body_type)) for path, (method, body_type) in routes.items()}
        self.servable = servable
        self.api_routes: dict[str, Any] = {}
        self.passes_request: dict[str, bool] = {}

    async def __call__(self, scope, receive, send):
        path = _route_path(scope) if scope["type"] == "http" and scope["method"] == "POST" else None
        if path not in self.routes or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        method, body_type = self.routes[path]
        body = await read_body(receive)
        if body is None:
            return
        replay = replaying(body, receive)
        try:
            req = body_type.validate_python(json.loads(body))
        except (ValueError, RecursionError, ValidationError):  # JSONDecodeError, UnicodeDecodeError: ValueErrors
            req = None
        if req is None or path not in self.api_routes:  # FastAPI answers; its router names the route for later
            await self.app(scope, replay, send)
            if req is not None and scope.get("route") is not None:
                self.api_routes[path] = scope["route"]
            return
        scope["route"] = self.api_routes[path]  # RequestMetrics labels answers with it
        request = Request(scope, replay)
        handler = getattr(self.servable(), method)
        if method not in self.passes_request:
            self.passes_request[method] = "request" in inspect.signature(handler).parameters
        try:
            response = await (handler(req, request) if self.passes_request[method] else handler(req))
        except Exception as exc:
            exc_handler = _exception_handler(scope["app"], exc)
            if exc_handler is None:
                raise
            response = await exc_handler(request, exc) if inspect.iscoroutinefunction(exc_handler) else \
                await run_in_threadpool(exc_handler, request, exc)
        await response(scope, replay, send)


def _route_path(scope) -> str:
    """The path the app's routes match (without the mount's root_path, as Starlette's router sees it)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _is_json(scope) -> bool:
    """The request's first Content-Type (the one Starlette reads) is application/json, with or without parameters."""
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            return value.split(b";")[0].strip().lower() == b"application/json"
    return False


class BodyTooLargeError(Exception):
    """More than read_body's `max_bytes` arrived."""


async def read_body(receive, max_bytes: int | None = None) -> bytes | None:
    """The whole request body from its `http.request` messages; None when the client left first. Raises
    BodyTooLargeError as soon as more than `max_bytes` arrived (the rest is not read)."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if max_bytes is not None and size > max_bytes:
            raise BodyTooLargeError
        more = message.get("more_body", False)
    return b"".join(chunks)


def replaying(body: bytes, receive):
    """A receive callable for the app below: `body` as one message, then whatever `receive` gets (a disconnect)."""
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _exception_handler(app, exc: Exception):
    """The handler Starlette's exception middleware would pick for `exc`, or None: for an HTTPException the one of
    its status code first, then the one of `exc`'s class or nearest base; handlers of 500 and `Exception` belong to
    the outermost server-error middleware, so they are not looked at here (the exception goes up to it)."""
    handlers = {key: h for key, h in app.exception_handlers.items() if key not in (500, Exception)}
    if isinstance(exc, StarletteHTTPException) and exc.status_code in handlers:
        return handlers[exc.status_code]
    return next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)


class Answer(Response):
    """A JSON answer already shaped like its endpoint's `response_model` (still declared, for OpenAPI): FastAPI's
    validate-and-serialise path costs ~160 us for a 20-item answer, `json.dumps` ~37-46 us, `orjson.dumps` ~2.4 us
    (bench/RESULTS.md)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
        if b"null" in body:  # orjson writes NaN and infinity as null: a non-finite number must fail, not vanish
            json.dumps(content, allow_nan=False, default=_numpy_as_python)
        return body


def _numpy_as_python(value: Any) -> Any:
    """json.dumps' fallback for what orjson's OPT_SERIALIZE_NUMPY writes: numpy scalars and arrays."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One line naming each wrong field. A body that may be one of several models (`SimilarRequest`) fails once per
    model: only the model it came closest to (fewest errors) is reported, when there is one."""
    per_branch: dict[str, list] = {}
    for e in errors:
        loc = [p for p in e.get("loc", ()) if p != "body"]
        branch = loc.pop(0) if loc and loc[0] in UNION_MODELS else ""
        text = "must contain a non-space character" if e.get("ctx", {}).get("pattern") == NON_BLANK else \
            e.get("msg", "invalid")
        per_branch.setdefault(branch, []).append(f"{'.'.join(map(str, loc))}: {text}" if loc else str(text))
    sizes = sorted(len(v) for v in per_branch.values())
    if len(per_branch) > 1 and sizes[0] < sizes[1]:
        return "; ".join(min(per_branch.values(), key=len))
    return "; ".join(f"{branch}: {m}" if branch else m for branch, ms in per_branch.items() for m in ms)
