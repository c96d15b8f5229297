"""HTTP service for a policy bundle (FastAPI + uvicorn; ``pip install pedagogym[serve]``).

    pedagogym serve BUNDLE/ --port 8000

``POST /recommend``  body ``{"learner_id"?, "events": [...], "now"?, "constraints"?, "include_features"?, "explain"?}``
                     -> ``{"learner_id", "item_id", "action", "scores", "eligible", "session", "n_events", "policy",
                     "risk"?, "features"?, "explanation"?}`` (``risk``: ``{target: probability}`` when the bundle
                     has an early-warning model)
``POST /risk``       body ``{"learner_id"?, "events": [...], "now"?}`` -> ``{"learner_id", "n_events", "risk"}``;
                     HTTP 404 when the bundle has no early-warning model
``GET /health``      -> status, policy, curriculum hash, model sha256, sizes
``GET /manifest``    -> the bundle's manifest

Limits (``create_app`` / ``pedagogym serve`` options, defaults sized for real learners): a body
of at most ``max_body_bytes`` (default 8 MiB, about 60,000 events) and at most ``max_events``
events per request (default 20,000) -> HTTP 413 otherwise; integers beyond 2**53, numbers that
overflow a float, NaN / Infinity (each named by its field), invalid UTF-8, lone surrogates
(``"\ud800"``) and nesting deeper than 64 -> HTTP 422. Timestamps must lie in years 1..9999 with offsets of at most 18:00,
and ``response_time`` at most one year (:mod:`pedagogym.deploy.events`). Decisions run in a
pool of ``workers`` threads (default 4), off the event loop, so ``/health`` answers while
they run; at most ``max_pending`` requests (default 64) wait for a worker, the next get HTTP
503 with ``Retry-After``. With a ``token`` (``--token`` or the environment variable
``PEDAGOGYM_TOKEN``), every endpoint but ``/health`` needs ``Authorization: Bearer <token>``
(HTTP 401 otherwise). ``/manifest`` replaces absolute local paths by ``"<local path>"``. A
model that picks an item outside the range or the mask is HTTP 500 with the runtime's
``BundleError`` message, never a forbidden item.

Bad input never takes the service down: wrong field types, missing fields, unknown item ids,
times going backwards, impossible constraints -> HTTP 422 with ``{"detail": "<message>"}``
(schema errors also list every problem under ``errors``); a teacher's daily time cap reached
-> HTTP 409 with the same shape. Constraints: ``only``, ``exclude`` (item ids), ``pin`` (item
id), ``forbid_skills``, ``review_skills`` (skill ids), ``daily_minutes``
(:meth:`pedagogym.deploy.recommender.Recommender.constrain`).

Explanations: ``"explain": true`` (default false), or an object of options ``{"top_k": 3,
"top_features": 3, "review_after_days": 1.0, "max_review": 5}`` (any subset), adds
``explanation`` (definitions in :mod:`pedagogym.deploy.explain`)::

    {"summary": str,
     "chosen": {"item_id", "score", "skills": [Skill], "attempts", "correct", "days_since_last": float | null,
                "unlocked": bool, "due_for_review": bool},
     "alternatives": [{"item_id", "score", "score_gap", "skills": [skill id], "reason": str}],   # top_k, by score
     "skills": [Skill],                       # every skill
     "unlock_threshold": float,
     "locked_items": [{"item_id", "missing": [prerequisite skill id]}],
     "due_for_review": {"n_due", "review_after_days", "items": [{"item_id", "days_since_last", "attempts",
                        "accuracy", "skills", "weakest_belief", "eligible"}]},
     "constraints": null | {"applied": [key], "eligible_without", "eligible_with", "narrowed_by": {key: [item id]},
                            "unconstrained_choice", "changed_choice", "daily"?: {"cap_minutes", "minutes_today",
                            "minutes_left"}},
     "attribution": null | {"method": "occlusion", "baseline", "item_id",
                            "groups": [{"group", "features": [feature name], "effect", "text"}]}}
    Skill = {"skill_id", "belief", "attempts", "correct", "accuracy": float | null,
             "prerequisites": [{"skill_id", "belief", "met"}], "unlocked"}

Nulls inside ``explanation`` are kept (only top-level nulls are omitted). A malformed
``explain`` (not a boolean or an object, unknown option, out-of-range value) is HTTP 422.
"""
from __future__ import annotations

import hmac
import json
import math
import os
import re
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from pedagogym.deploy.bundle import BundleError
from pedagogym.deploy.events import EventError
from pedagogym.deploy.explain import EXPLAIN_KEYS, ExplainError
from pedagogym.deploy.recommender import ConstraintError, DailyCapReached, NoEarlyWarning, Recommender

def _number(v: Any) -> float | int:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number, got {type(v).__name__} {str(v)[:40]!r}")
    if isinstance(v, int) and abs(v) > 2**53:
        raise ValueError(f"integer {str(v)[:24]}... is too large (at most 2**53 in magnitude)")
    if not math.isfinite(v):
        raise ValueError("must be finite")
    return v


def _time(v: Any) -> float | int | str:
    if isinstance(v, str):
        return v
    try:
        return _number(v)
    except ValueError:
        raise ValueError(f"expected epoch seconds (a number) or an ISO 8601 string, got {type(v).__name__} {v!r}") from None


Number = Annotated[float | int, BeforeValidator(_number)]
Time = Annotated[float | int | str, BeforeValidator(_time)]


class EventIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    learner_id: StrictStr | None = None
    item_id: StrictStr
    correct: StrictBool | None = Field(description="true / false; null when no response was recorded")
    response_time: Number = Field(ge=0, description="seconds on the item")
    timestamp: Time = Field(description="epoch seconds or ISO 8601 (UTC when no offset)")


class ConstraintsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    only: list[StrictStr] | None = None
    exclude: list[StrictStr] | None = None
    pin: StrictStr | None = Field(default=None, description="item id to present next")
    forbid_skills: list[StrictStr] | None = None
    review_skills: list[StrictStr] | None = None
    daily_minutes: Number | None = Field(default=None, gt=0, description="cap on time on task per UTC day")


class ExplainIn(BaseModel):
    """Explanation options; the runtime checks their ranges (ExplainOptions.parse)."""
    model_config = ConfigDict(extra="forbid")

    top_k: StrictInt | None = Field(default=None, description="alternatives listed (0-100; default 3)")
    top_features: StrictInt | None = Field(default=None, description="feature groups under attribution (0-100; default 3)")
    review_after_days: Number | None = Field(default=None, description="days after which an item is due (default 1)")
    max_review: StrictInt | None = Field(default=None, description="items listed as due for review (0-100; default 5)")


def _explain(v: Any) -> Any:
    if v is None or v is False:
        return None
    if v is True:
        return {}
    if isinstance(v, dict):
        return v
    raise ValueError(f"expected true, false or an object with keys among {list(EXPLAIN_KEYS)}, "
                     f"got {type(v).__name__} {v!r}")


class RecommendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learner_id: StrictStr | None = None
    events: list[EventIn]
    now: Time | None = None
    constraints: ConstraintsIn | None = None
    include_features: StrictBool = False
    explain: Annotated[ExplainIn | None, BeforeValidator(_explain)] = Field(
        default=None, description="true, false (default) or explanation options")


class RecommendOut(BaseModel):
    learner_id: str | None
    item_id: str
    action: int
    scores: dict[str, float]
    eligible: list[str]
    session: int
    n_events: int
    policy: str | None
    risk: dict[str, float] | None = None
    features: dict[str, float] | None = None
    explanation: dict[str, Any] | None = None


class RiskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learner_id: StrictStr | None = None
    events: list[EventIn]
    now: Time | None = None


class RiskOut(BaseModel):
    learner_id: str | None
    n_events: int
    risk: dict[str, float]


DEFAULT_MAX_BODY_BYTES = 8 << 20
DEFAULT_MAX_EVENTS = 20_000
DEFAULT_WORKERS = 4
DEFAULT_MAX_PENDING = 64
MAX_DEPTH = 64
TOKEN_ENV = "PEDAGOGYM_TOKEN"


class BadBody(ValueError):
    """A request body that is not acceptable JSON (HTTP 422) or too large (HTTP 413)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def _check_tree(v: Any, depth: int = 0) -> None:
    """Strings must be encodable as UTF-8 (no lone surrogates); nesting at most MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise BadBody(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise BadBody("a string holds a lone surrogate (not valid Unicode)") from None
    elif isinstance(v, dict):
        for k, x in v.items():
            _check_tree(k, depth + 1)
            _check_tree(x, depth + 1)
    elif isinstance(v, list):
        for x in v:
            _check_tree(x, depth + 1)


def parse_body(raw: bytes, max_events: int) -> Any:
    """The JSON of a request body, or :class:`BadBody` (never an uncaught exception)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text)  # NaN, 1e999 (inf) and huge integers are refused with their location by the schema
    except RecursionError:
        raise BadBody(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise BadBody(f"the body is not valid JSON ({exc})") from None
    _check_tree(data)
    if isinstance(data, dict) and isinstance(data.get("events"), list) and len(data["events"]) > max_events:
        raise BadBody(f"events: {len(data['events'])} events in one request; at most {max_events} "
                      f"(the server's max_events)", 413)
    return data


_ABS_PATH = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")


def redact_paths(v: Any) -> Any:
    """The manifest with absolute local paths (POSIX, home, Windows drive or UNC) replaced."""
    if isinstance(v, str):
        return "<local path>" if _ABS_PATH.match(v) else v
    if isinstance(v, dict):
        return {k: redact_paths(x) for k, x in v.items()}
    if isinstance(v, list):
        return [redact_paths(x) for x in v]
    return v


class _BodyLimit:
    """ASGI middleware: read a POST body up to ``limit`` bytes (HTTP 413 beyond, before any
    parsing), then hand it to the app."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = JSONResponse(status_code=413, content={
            "detail": f"request body larger than {self.limit} bytes (the server's max_body_bytes)"})
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await too_big(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await too_big(scope, receive, send)
            chunks.append(chunk)
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def _where(loc: tuple) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def create_app(recommender: Recommender, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_events: int = DEFAULT_MAX_EVENTS, workers: int = DEFAULT_WORKERS,
               max_pending: int = DEFAULT_MAX_PENDING, token: str | None = None) -> FastAPI:
    for name, v, lo in (("max_body_bytes", max_body_bytes, 1), ("max_events", max_events, 1), ("workers", workers, 1),
                        ("max_pending", max_pending, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name}: expected an integer >= {lo}, got {v!r}")
    if token is not None and (not isinstance(token, str) or not token or not token.isprintable() or " " in token):
        raise ValueError("token: expected a non-empty printable string without spaces")
    m = recommender.manifest
    public_manifest = redact_paths(m)
    app = FastAPI(title="pedagogym recommender", version=str(m.get("pedagogym_version")),
                  description=f"policy {m['policy'].get('name')!r} on curriculum {m['curriculum'].get('name')!r}")
    app.add_middleware(_BodyLimit, limit=max_body_bytes)
    limiter = anyio.CapacityLimiter(workers)
    pending = {"n": 0}
    expected = f"Bearer {token}".encode() if token else None

    def _errors_response(errors: list[dict[str, Any]]) -> JSONResponse:
        detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors) or "invalid request"
        return JSONResponse(status_code=422, content={"detail": detail, "errors": errors})

    def _errors(exc) -> list[dict[str, Any]]:
        return [{"loc": _where(tuple(e.get("loc", ()))), "msg": e.get("msg", "").removeprefix("Value error, ")}
                for e in exc.errors()]

    if expected is not None:
        @app.middleware("http")
        async def _auth(request: Request, call_next):
            if request.url.path != "/health":
                got = request.headers.get("authorization", "").encode("utf-8", "replace")
                if not hmac.compare_digest(got, expected):
                    return JSONResponse(status_code=401, content={"detail": "missing or wrong bearer token"},
                                        headers={"WWW-Authenticate": "Bearer"})
            return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _errors_response(_errors(exc))

    @app.exception_handler(EventError)
    @app.exception_handler(ConstraintError)
    @app.exception_handler(ExplainError)
    async def _semantic(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse(status_code=409 if isinstance(exc, DailyCapReached) else 422, content={"detail": str(exc)})

    @app.exception_handler(NoEarlyWarning)
    async def _no_risk(request: Request, exc: NoEarlyWarning) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(BundleError)
    async def _bad_model(request: Request, exc: BundleError) -> JSONResponse:  # the bundle's model misbehaved
        return JSONResponse(status_code=500, content={"detail": str(exc)})

    @app.exception_handler(BadBody)
    async def _bad_body(request: Request, exc: BadBody) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"detail": f"body: {exc}"})

    async def _body(request: Request, model: type[BaseModel]) -> BaseModel:
        data = parse_body(await request.body(), max_events)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None

    async def _off_loop(fn, *args, **kwargs):
        """Run ``fn`` in the worker pool (never on the event loop); HTTP 503 when too many wait."""
        if pending["n"] >= workers + max_pending:
            return JSONResponse(status_code=503, content={"detail": "busy: too many requests waiting; retry shortly"},
                                headers={"Retry-After": "1"})
        pending["n"] += 1
        try:
            return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=limiter)
        finally:
            pending["n"] -= 1

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "policy": m["policy"].get("name"), "kind": m["policy"].get("kind"),
                "curriculum": m["curriculum"].get("name"), "curriculum_hash": m["curriculum"].get("content_hash"),
                "model_sha256": m["model"].get("sha256"), "bundle_sha256": m.get("bundle_sha256"),
                "format_version": m.get("format_version"),
                "n_items": recommender.spec.n_items, "n_features": recommender.spec.n_features,
                "early_warning": recommender.risk_targets or None}

    @app.get("/manifest")
    async def manifest() -> dict[str, Any]:
        return public_manifest

    body_doc = lambda model: {"requestBody": {"required": True, "content": {"application/json": {  # noqa: E731
        "schema": model.model_json_schema(ref_template="#/components/schemas/{model}")}}}}

    @app.post("/recommend", response_model=RecommendOut, response_model_exclude_none=True,
              openapi_extra=body_doc(RecommendIn))
    async def recommend(request: Request) -> Any:
        body = await _body(request, RecommendIn)
        events = [e.model_dump(exclude_none=False) for e in body.events]
        constraints = body.constraints.model_dump(exclude_none=True) if body.constraints else None
        explain = body.explain.model_dump(exclude_none=True) if body.explain is not None else False
        return await _off_loop(recommender.recommend, events, constraints, now=body.now, learner_id=body.learner_id,
                               include_features=body.include_features, explain=explain)

    @app.post("/risk", response_model=RiskOut, openapi_extra=body_doc(RiskIn))
    async def risk(request: Request) -> Any:
        body = await _body(request, RiskIn)
        events = [e.model_dump(exclude_none=False) for e in body.events]
        lid = body.learner_id or next((e["learner_id"] for e in events if e.get("learner_id")), None)
        out = await _off_loop(recommender.risk, events, now=body.now, learner_id=body.learner_id)
        if isinstance(out, JSONResponse):
            return out
        return {"learner_id": lid, "n_events": len(events), "risk": out}

    return app


def serve(bundle: str, host: str = "127.0.0.1", port: int = 8000, idle_gap_s: float | None = None,
          access_log: bool = False, *, token: str | None = None, expected_sha256: str | None = None,
          **limits: int) -> None:
    """Load ``bundle`` and serve it; ``token`` (default: the ``PEDAGOGYM_TOKEN`` environment
    variable) turns on bearer authentication; ``limits``: see :func:`create_app`."""
    import uvicorn

    if not 1 <= port <= 65535:
        raise ValueError(f"port: expected 1..65535, got {port}")
    token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
    app = create_app(Recommender(bundle, idle_gap_s=idle_gap_s, expected_sha256=expected_sha256), token=token,
                     **limits)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=access_log)
