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

import math
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from pedagogym.deploy.events import EventError
from pedagogym.deploy.explain import EXPLAIN_KEYS, ExplainError
from pedagogym.deploy.recommender import ConstraintError, DailyCapReached, NoEarlyWarning, Recommender

def _number(v: Any) -> float | int:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number, got {type(v).__name__} {v!r}")
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


def _where(loc: tuple) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def create_app(recommender: Recommender) -> FastAPI:
    m = recommender.manifest
    app = FastAPI(title="pedagogym recommender", version=str(m.get("pedagogym_version")),
                  description=f"policy {m['policy'].get('name')!r} on curriculum {m['curriculum'].get('name')!r}")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": _where(tuple(e.get("loc", ()))), "msg": e.get("msg", "").removeprefix("Value error, ")}
                  for e in exc.errors()]
        detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors) or "invalid request"
        return JSONResponse(status_code=422, content={"detail": detail, "errors": errors})

    @app.exception_handler(EventError)
    @app.exception_handler(ConstraintError)
    @app.exception_handler(ExplainError)
    async def _semantic(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse(status_code=409 if isinstance(exc, DailyCapReached) else 422, content={"detail": str(exc)})

    @app.exception_handler(NoEarlyWarning)
    async def _no_risk(request: Request, exc: NoEarlyWarning) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "policy": m["policy"].get("name"), "kind": m["policy"].get("kind"),
                "curriculum": m["curriculum"].get("name"), "curriculum_hash": m["curriculum"].get("content_hash"),
                "model_sha256": m["model"].get("sha256"), "format_version": m.get("format_version"),
                "n_items": recommender.spec.n_items, "n_features": recommender.spec.n_features,
                "early_warning": recommender.risk_targets or None}

    @app.get("/manifest")
    async def manifest() -> dict[str, Any]:
        return m

    # async: decisions run on the event loop, one at a time (the model's buffers are shared)
    @app.post("/recommend", response_model=RecommendOut, response_model_exclude_none=True)
    async def recommend(body: RecommendIn) -> dict[str, Any]:
        events = [e.model_dump(exclude_none=False) for e in body.events]
        constraints = body.constraints.model_dump(exclude_none=True) if body.constraints else None
        explain = body.explain.model_dump(exclude_none=True) if body.explain is not None else False
        return recommender.recommend(events, constraints, now=body.now, learner_id=body.learner_id,
                                     include_features=body.include_features, explain=explain)

    @app.post("/risk", response_model=RiskOut)
    async def risk(body: RiskIn) -> dict[str, Any]:
        events = [e.model_dump(exclude_none=False) for e in body.events]
        lid = body.learner_id or next((e["learner_id"] for e in events if e.get("learner_id")), None)
        return {"learner_id": lid, "n_events": len(events),
                "risk": recommender.risk(events, now=body.now, learner_id=body.learner_id)}

    return app


def serve(bundle: str, host: str = "127.0.0.1", port: int = 8000, idle_gap_s: float | None = None,
          access_log: bool = False) -> None:
    import uvicorn

    app = create_app(Recommender(bundle, idle_gap_s=idle_gap_s))
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=access_log)
