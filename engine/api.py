"""The HTTP API: ``python -m engine serve`` (FastAPI, served by uvicorn), OpenAPI documentation at ``/docs``.

For services not written in Python and for operations scripts. Every endpoint calls the
functions the CLI and the dashboard call, so a retrain asked for here is the same queued
command (source ``api``) the Retrain button sends, and a prediction goes through the same
:class:`engine.Classifier` (logged, hot-reloaded, falling back like every other client).

Endpoints (see ``/docs`` for the shapes):

- reads: ``GET /model/status``, ``/retrain/metrics``, ``/retrain/status``, ``/scheduler/status``,
  ``/commands/{id}``, ``/events``, ``/models`` (through ``engine.lifecycle.ModelRegistry``), ``/healthz`` (process up), ``/readyz`` (a model serves);
- writes: ``POST /predict``, ``/feedback``, ``/retrain``, ``/rollback``, ``/scheduler/start``,
  ``/scheduler/stop``.

Who may write: with an ``action_token`` secret set (see :mod:`engine.access`), every write needs
``Authorization: Bearer <token>``, wherever the server listens. Without one, writes are open only
while the server listens on a loopback address, and :func:`serve` refuses to listen anywhere else.

Errors: a 4xx answer is ``{"detail": "...", "field": "..."}`` naming the field that was wrong and
what would be right; anything unexpected is a 500 with a reference to the server's log, never a
traceback or a server path.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import re
import signal
import socket
import sys
import threading
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine import registry
from engine.access import action_token, is_loopback
from engine.classifier import Classifier
from engine.commands import check_rollback, submit
from engine.config import PROJECT_ROOT, Settings
from engine.context import Context
from engine.dataset import normalize_label
from engine.errors import (
    InputError,
    ModelLoadError,
    NoModelError,
    RegistryError,
    RetrainerError,
    SettingsError,
    StoreError,
    UnknownLabelError,
)
from engine.lifecycle import ModelRegistry
from engine.lock import worker_running
from engine.status import system_status
from store.commands import get_command, queued_commands
from store.events import recent_events
from store.models import get_model, list_models
from store.querylog import query_logged
from store.retrains import recent_retrains
from store.vocabulary import CommandKind, EventKind

log = logging.getLogger(__name__)

SOURCE = "api"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Query ids this process answered, remembered so feedback on them is accepted before the
# worker has ingested them (at most this many, oldest forgotten first: ~10 MB).
RECENT_QUERY_IDS = 100_000
# Single texts up to this many characters are classified on the event loop (about 1 ms); longer ones
# and batches in the thread pool.
INLINE_CHARS = 4000


# -- errors ------------------------------------------------------------------------------------------


class ApiError(Exception):
    """A refusal with an HTTP status, the field that was wrong (None: the request as a whole) and the fix."""

    def __init__(self, status: int, message: str, *, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.field = field
        self.headers = headers


class Problem(BaseModel):
    """Every error answer: what was wrong and what would be right, and the field it concerns."""

    detail: str = Field(examples=["text: the query is empty: type some words to classify"])
    field: str | None = Field(default=None, examples=["text"])


# Engine errors a request can cause, by class (the first match wins): the HTTP status.
_STATUS_OF = (
    (UnknownLabelError, 422),
    (InputError, 422),
    (NoModelError, 503),
    (ModelLoadError, 503),
    (RegistryError, 409),
    (StoreError, 503),
    (RetrainerError, 400),
)
# An absolute file path under a usual top folder (URL paths such as /retrain stay).
_PATH = re.compile(r"(?<![\w:/.])/(?:home|root|tmp|srv|var|etc|opt|usr|mnt|media|data|work|run|proc|dev|Users|private)"
                   r"(?:/[\w.+@~-]+)+/?")


def public_message(message: str, *, home: Path | None = None) -> str:
    """``message`` without server paths: the data directory becomes ``$RETRAINER_HOME``, others ``<path>``.

    >>> public_message("no model is deployed in /srv/data yet", home=Path("/srv/data"))
    'no model is deployed in $RETRAINER_HOME yet'
    >>> public_message("model v0001: file /srv/data/models/v0001.pkl is missing", home=Path("/srv/data"))
    'model v0001: file $RETRAINER_HOME/models/v0001.pkl is missing'
    >>> public_message("cannot read /etc/x/secrets.toml: denied; see `python -m engine status`")
    'cannot read <path>: denied; see `python -m engine status`'
    """
    roots = []
    if home is not None:
        roots += [str(home.resolve()), str(home)]
    for root in roots:
        if len(root) > 1:
            message = _folder(root).sub("$RETRAINER_HOME", message)
    for root in (str(PROJECT_ROOT), sys.prefix, str(Path.home())):
        if len(root) > 1:
            message = _folder(root).sub("<path>", message)
    return _PATH.sub("<path>", message)


def _folder(root: str) -> re.Pattern:
    """``root`` where it is a whole path or a path's start, not "/srv/data" inside "/srv/data-old/x".

    >>> _folder("/srv/data").sub("$RETRAINER_HOME", "/srv/data/a, /srv/data-old/b, /srv/data.")
    '$RETRAINER_HOME/a, /srv/data-old/b, $RETRAINER_HOME.'
    """
    return re.compile(r"(?<![\w.~/-])" + re.escape(root.rstrip("/")) + r"(?=/|[.:]?(?:\s|$)|[\s'\"`()\[\]<>,;]|$)")


# -- the request and answer shapes -------------------------------------------------------------------


class PredictRequest(BaseModel):
    """One text (``text``) or a batch (``texts``), not both."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"text": "where is my parcel"},
                                                                               {"texts": ["refund please", "hi"]}]})
    text: str | None = Field(default=None, description="one query to classify")
    texts: list[str] | None = Field(default=None, description="several queries, classified in one model call")


class LabelScore(BaseModel):
    label: str
    probability: float = Field(description="the model's probability for this label, 0..1")


class PredictionOut(BaseModel):
    """One answer; ``query_id`` is what ``POST /feedback`` needs later."""

    label: str
    confidence: float = Field(description="probability of the label, 0..1")
    top: list[LabelScore] = Field(description="the three most likely labels, best first")
    version: str = Field(description="the model version that answered, e.g. v0007")
    query_id: str
    fallback: bool = Field(description="true when the active model could not be loaded and an earlier one answered")


class PredictionsOut(BaseModel):
    predictions: list[PredictionOut]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"query_id": "3f2a…", "label": "track_order"}]})
    query_id: str = Field(min_length=1, max_length=200, description="the query_id POST /predict answered")
    label: str = Field(min_length=1, max_length=200, description="the true label, one of the model's labels")


class FeedbackOut(BaseModel):
    query_id: str
    label: str
    recorded: bool = True


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}, {"to": "v0003"}]})
    to: str | None = Field(default=None, max_length=200, description="a version that served before, e.g. v0003; "
                                                                     "none: the version that served before the active one")


class RetrainRequest(BaseModel):
    """The CLI's ``retrain --force``: train even when the training set is the champion's (no body: false)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}, {"force": True}]})
    force: bool = Field(default=False, strict=True, description="true: train even when the training set equals the "
                                                               "champion's (otherwise the cycle ends 'skipped')")


class CommandOut(BaseModel):
    """A command in the worker's queue (the same queue the dashboard's buttons use)."""

    id: int
    kind: str
    args: dict[str, Any]
    source: str
    status: Literal["queued", "running", "done", "failed"]
    created_at: str | None
    started_at: str | None = None
    finished_at: str | None = None
    progress: float | None = None
    stage: str | None = None
    message: str | None = None
    worker_running: bool = Field(description="whether a worker holds the data directory now; "
                                             "without one the command waits until one starts")


# -- the service behind the endpoints ----------------------------------------------------------------


@dataclass
class Service:
    """What the endpoints share: the context, the classifier, who may write, and recent query ids."""

    ctx: Context
    token: str | None
    loopback: bool
    classifier: Classifier | None = None
    _recent: "OrderedDict[str, None]" = field(default_factory=OrderedDict)
    _recent_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    def remember(self, query_ids: list[str]) -> None:
        with self._recent_lock:
            for query_id in query_ids:
                self._recent[query_id] = None
            while len(self._recent) > RECENT_QUERY_IDS:
                self._recent.popitem(last=False)

    def answered(self, query_id: str) -> bool:
        """True when this process answered the query or the store holds it."""
        with self._recent_lock:
            if query_id in self._recent:
                return True
        return query_logged(self.ctx.db, query_id)

    def public(self, message: str) -> str:
        return public_message(message, home=self.settings.home)


async def _service(request: Request) -> Service:
    return request.app.state.service


async def _classifier(service: Annotated[Service, Depends(_service)]) -> Classifier:
    if service.classifier is None:  # the lifespan did not run (an app used without its server)
        raise ApiError(503, "the classifier is not started: run the API with `python -m engine serve`")
    return service.classifier


_bearer = HTTPBearer(auto_error=False, description="the action_token from .streamlit/secrets.toml")


async def _authorized(service: Annotated[Service, Depends(_service)],
                      credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Let a write through, or refuse it with 401 saying how to authorize."""
    if service.token is None:
        if service.loopback:
            return
        raise ApiError(403, "writes are refused: this server listens beyond this machine and no action_token is set; "
                            "set one in .streamlit/secrets.toml (see the README)", field="Authorization")
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), service.token.encode()):
        reason = "is missing" if credentials is None else "does not match"
        raise ApiError(401, f"the bearer token {reason}: send the action_token from .streamlit/secrets.toml "
                            "as the header `Authorization: Bearer <token>`",
                       field="Authorization", headers={"WWW-Authenticate": "Bearer"})


ServiceDep = Annotated[Service, Depends(_service)]
ClassifierDep = Annotated[Classifier, Depends(_classifier)]
Write = [Depends(_authorized)]
ERRORS = {code: {"model": Problem} for code in (401, 404, 409, 413, 503)}


# -- helpers --------------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A store value made JSON-ready: times as ISO 8601 in UTC, NaN and infinities as None.

    >>> plain({"ts": datetime(2026, 3, 4, 12, 0), "acc": float("nan"), "n": [1, 2.5]})
    {'ts': '2026-03-04T12:00:00Z', 'acc': None, 'n': [1, 2.5]}
    """
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.isoformat() + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return plain(value.item())
    return value


def _prediction(p) -> dict[str, Any]:
    return {"label": p.label, "confidence": p.confidence,
            "top": [{"label": label, "probability": prob} for label, prob in p.top],
            "version": p.version, "query_id": p.query_id, "fallback": p.fallback}


def _command(service: Service, command_id: int) -> dict[str, Any]:
    row = get_command(service.ctx.db, command_id)
    if row is None:
        raise ApiError(404, f"there is no command #{command_id}: use the id POST /retrain, /rollback or "
                            "/scheduler/... answered", field="command_id")
    row = plain(row)
    row["worker_running"] = worker_running(service.settings.worker_lock_path) is not None
    return row


def _queue(service: Service, kind: str, args: dict[str, Any] | None = None) -> JSONResponse:
    """Queue a command exactly as the dashboard's buttons do (source ``api``); answer 202 with its row."""
    command_id = submit(service.ctx, kind, args=args, source=SOURCE)
    return JSONResponse(_command(service, command_id), status_code=202)


# -- the app ---------------------------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: refuse a request body over ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, *, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        if declared is not None:  # the server stops at the declared length
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []  # chunked: read it all (up to the limit), then replay it
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(send)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"the request body is over the limit of {self.limit:,} bytes: send less "
                       "(split a batch into several requests; setting api_max_body_bytes)", "field": "body"},
            status_code=413)
        await response(scope={"type": "http"}, receive=None, send=send)  # type: ignore[arg-type]


SHOWN_CHARS = 40  # at most this much of a client's input (a field name, a value) is echoed in an answer


def _clip(text: str, width: int = SHOWN_CHARS) -> str:
    """``text``, cut to ``width`` characters with an ellipsis: an answer never echoes unbounded input.

    >>> _clip("v" * 100_000, 5)
    'vvvvv… (100,000 characters)'
    """
    return text if len(text) <= width else f"{text[:width]}… ({len(text):,} characters)"


def _field_of(location: tuple[Any, ...]) -> str:
    parts = [_clip(str(p)) for p in location if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


_FIXES = {
    "missing": "add it",
    "extra_forbidden": "remove it (see /docs for the fields this endpoint takes)",
    "string_type": "send a JSON string",
    "list_type": "send a JSON array of strings",
    "bool_type": "send true or false",
    "model_attributes_type": "send a JSON object with the header Content-Type: application/json (see /docs)",
    "dict_type": "send a JSON object (see /docs)",
    "string_too_short": "send a non-empty string",
    "string_too_long": "send a shorter string",
}
# A body each endpoint takes, shown when the body is not a JSON object.
_EXAMPLES = {"/predict": '{"text": "where is my parcel"}', "/feedback": '{"query_id": "3f2a…", "label": "track_order"}',
             "/rollback": '{"to": "v0003"}', "/retrain": '{"force": true}'}
_JSON_KINDS = ((bool, "a JSON true or false"), (list, "a JSON array"), (str, "a JSON string"), (int, "a JSON number"),
               (float, "a JSON number"))


def _send_object(request: Request) -> str:
    """How to send this endpoint's body: a JSON object, with an example of one it takes."""
    example = _EXAMPLES.get(request.url.path)
    return f"send a JSON object, e.g. {example}" if example else "send a JSON object (see /docs)"


def _json_body(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    kind = first.get("type", "")
    where = _field_of(tuple(first.get("loc", ())))
    value = first.get("input")
    if kind == "json_invalid":
        message = f"the body is not valid JSON: {_send_object(request)}"
        where = "body"
    elif kind == "missing" and where == "body":
        message = f"the body is missing: {_send_object(request)}"
    elif kind in ("model_attributes_type", "dict_type") and where == "body" and _json_body(request):
        shown = "JSON null" if value is None else next((name for type_, name in _JSON_KINDS if isinstance(value, type_)),
                                                      "a JSON value")
        message = f"the body is {shown}, not an object: {_send_object(request)}"
    else:
        fix = _FIXES.get(kind)
        message = f"{where}: {first.get('msg', 'is not valid')}" + (f": {fix}" if fix else "")
    return JSONResponse({"detail": message, "field": where}, status_code=422)


async def _refused(request: Request, exc: ApiError) -> JSONResponse:
    service: Service = request.app.state.service
    return JSONResponse({"detail": service.public(str(exc)), "field": exc.field}, status_code=exc.status,
                        headers=exc.headers)


async def _engine_error(request: Request, exc: RetrainerError) -> JSONResponse:
    service: Service = request.app.state.service
    status = next(code for kind, code in _STATUS_OF if isinstance(exc, kind))
    return JSONResponse({"detail": service.public(str(exc)), "field": None}, status_code=status)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        detail = f"there is no endpoint {request.method} {request.url.path}: see /docs for the endpoints"
    elif exc.status_code == 400:  # FastAPI could not parse the body: its cause says why
        if isinstance(exc.__cause__, RecursionError):
            reason = "the body's JSON is nested too deeply to be read"
        else:
            reason = "the body could not be read as JSON text (UTF-8)"
        return JSONResponse({"detail": f"{reason}: {_send_object(request)}", "field": "body"}, status_code=422)
    elif exc.status_code == 405:
        detail = f"{request.url.path} does not take {request.method}: see /docs for its methods"
    else:
        detail = str(exc.detail)
    return JSONResponse({"detail": detail, "field": None}, status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    reference = uuid.uuid4().hex[:12]
    log.error("unexpected error %s in %s %s", reference, request.method, request.url.path,
              exc_info=(type(exc), exc, exc.__traceback__))
    return JSONResponse({"detail": f"internal error (reference {reference}): the server's log has the details; "
                                   "the request may be retried", "field": None}, status_code=500)


def create_app(ctx: Context, *, token: str | None, host: str = DEFAULT_HOST, classifier: Classifier | None = None) -> FastAPI:
    """The FastAPI app serving ``ctx``'s data directory.

    ``token``: the action token (None: none set); ``host``: the address the server listens on
    (writes without a token are allowed only on loopback). ``classifier``: the one to serve
    with (default: a new ``Classifier(source="api")`` started with the app and closed, its
    buffer written, when the app stops). Raises SettingsError when ``host`` is not loopback
    and no token is set.
    """
    check_exposure(host, token)
    service = Service(ctx, token, is_loopback(host), classifier)
    owned = classifier is None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if service.classifier is None:
            service.classifier = Classifier(settings=ctx.settings, source=SOURCE)
        try:
            yield
        finally:
            if owned and service.classifier is not None:
                service.classifier.close()
                service.classifier = None

    app = FastAPI(
        title="Retrainer",
        summary="Classify texts, log feedback, and run the retrain cycle of a Retrainer data directory.",
        description=__doc__.split("\n\n", 2)[1] if __doc__ else None,
        version="1",
        lifespan=lifespan,
        responses={422: {"model": Problem, "description": "a field is not acceptable: `detail` says which and why"},
                   500: {"model": Problem, "description": "an unexpected error; the server's log has the details"}},
    )
    app.state.service = service
    app.add_middleware(BodyLimit, limit=ctx.settings.api_max_body_bytes)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(ApiError, _refused)
    app.add_exception_handler(RetrainerError, _engine_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    _routes(app)
    return app


def _routes(app: FastAPI) -> None:  # noqa: C901 - one place lists every endpoint
    @app.get("/healthz", tags=["health"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="A model is loaded and answers", responses={503: {"model": Problem}})
    async def readyz(service: ServiceDep, clf: ClassifierDep) -> dict[str, Any]:
        status = clf.status()
        if status.version is None:
            reason = status.fallback_reason or "no model is deployed yet: train one (`python -m engine retrain --wait`)"
            raise ApiError(503, f"not ready: {reason}")
        return {"ready": True, "version": status.version, "fallback": status.fallback,
                "fallback_reason": service.public(status.fallback_reason) if status.fallback_reason else None}

    # -- serving ----------------------------------------------------------------------------------------

    @app.post("/predict", tags=["serving"], dependencies=Write, responses=ERRORS,
              summary="Classify one text or a batch (every query is logged)")
    async def predict(body: PredictRequest, service: ServiceDep, clf: ClassifierDep) -> PredictionOut | PredictionsOut:
        if (body.text is None) == (body.texts is None):
            raise ApiError(422, 'send either "text" (one query) or "texts" (a list), not both and not neither',
                           field="text")
        if body.text is not None:
            # A short text is answered on the event loop: ~1 ms of CPU that needs the GIL anyway, and the
            # thread-pool hop around it cost more than the prediction (see benchmarks/api.py). A long one,
            # or a batch, goes to the thread pool so that the loop is never held for long.
            if len(body.text) <= INLINE_CHARS:
                return _predict_one(service, clf, body.text)
            return await run_in_threadpool(_predict_one, service, clf, body.text)
        return await run_in_threadpool(_predict_batch, service, clf, body.texts)

    @app.post("/feedback", tags=["serving"], dependencies=Write, responses=ERRORS,
              summary="Record the true label of a query POST /predict answered")
    def feedback(body: FeedbackRequest, service: ServiceDep, clf: ClassifierDep) -> FeedbackOut:
        query_id = body.query_id.strip()
        if not service.answered(query_id):
            raise ApiError(404, f"unknown query_id {query_id[:40]!r}: send the query_id that POST /predict answered "
                                "(queries logged by other processes are known once the worker has stored them)",
                           field="query_id")
        try:
            clf.feedback(query_id, body.label)
        except UnknownLabelError as exc:
            raise ApiError(422, f"label: {exc}", field="label") from None
        except InputError as exc:
            raise ApiError(422, f"label: {exc}", field="label") from None
        try:
            clf.flush()
        except OSError as exc:
            raise ApiError(503, f"the label is kept in memory but the spool cannot be written now ({exc.strerror}); "
                                "it is retried every few seconds") from None
        return FeedbackOut(query_id=query_id, label=normalize_label(body.label) or body.label)

    # -- the seed system's endpoints ----------------------------------------------------------------------

    @app.get("/model/status", tags=["model"], summary="The active model, what this server serves, fallback")
    def model_status(service: ServiceDep, clf: ClassifierDep) -> dict[str, Any]:
        status = system_status(service.ctx)
        serving = clf.status()
        return plain({
            "active": _file_names(service, status["active"]),
            "serving": {"version": serving.version, "active_version": serving.active_version,
                        "fallback": serving.fallback,
                        "fallback_reason": service.public(serving.fallback_reason) if serving.fallback_reason else None,
                        "labels": list(clf.labels())},
            "fallback": _public_dict(service, status["fallback"]),
        })

    @app.get("/retrain/metrics", tags=["retrain"], summary="Recent retrain cycles with both models' metrics")
    def retrain_metrics(service: ServiceDep,
                        limit: Annotated[int, Query(ge=1, le=1000, description="how many cycles, newest first")] = 20
                        ) -> dict[str, Any]:
        return plain({"retrains": recent_retrains(service.ctx.db, limit=limit)})

    @app.get("/retrain/status", tags=["retrain"],
             summary="The retrain running now, retrains waiting in the queue, and the last decision")
    def retrain_status(service: ServiceDep) -> dict[str, Any]:
        status = system_status(service.ctx)
        last = recent_retrains(service.ctx.db, limit=1)
        return plain({
            "in_progress": status["retrain_in_progress"],
            "queued": [c for c in queued_commands(service.ctx.db) if c["kind"] == CommandKind.RETRAIN],
            "last": last[0] if last else None,
            "adaptive": status["adaptive"],
            "worker": status["worker"],
        })

    @app.post("/retrain", tags=["retrain"], dependencies=Write, status_code=202, responses=ERRORS,
              response_model=CommandOut, summary="Ask for a retrain (the dashboard's Retrain button)")
    def retrain(service: ServiceDep, body: RetrainRequest | None = None) -> JSONResponse:
        force = body is not None and body.force
        return _queue(service, CommandKind.RETRAIN, {"force": True} if force else {})  # the CLI's args for --force

    @app.get("/commands/{command_id}", tags=["retrain"], response_model=CommandOut, responses=ERRORS,
             summary="One queued command: queued, running (with progress), done or failed (with the reason)")
    def command(service: ServiceDep, command_id: int) -> JSONResponse:
        return JSONResponse(_command(service, command_id))

    @app.get("/scheduler/status", tags=["scheduler"], summary="Paused or running, the jobs, the adaptive counters")
    def scheduler_status(service: ServiceDep) -> dict[str, Any]:
        status = system_status(service.ctx)
        return plain({**status["scheduler"], "adaptive": status["adaptive"],
                      "pending": [c for c in queued_commands(service.ctx.db) if c["kind"] in (CommandKind.PAUSE, CommandKind.RESUME)],
                      "worker": status["worker"]})

    @app.post("/scheduler/start", tags=["scheduler"], dependencies=Write, status_code=202, responses=ERRORS,
              response_model=CommandOut, summary="Resume the scheduler (the dashboard's Resume button)")
    def scheduler_start(service: ServiceDep) -> JSONResponse:
        return _queue(service, CommandKind.RESUME)

    @app.post("/scheduler/stop", tags=["scheduler"], dependencies=Write, status_code=202, responses=ERRORS,
              response_model=CommandOut, summary="Pause the scheduler (the dashboard's Pause button)")
    def scheduler_stop(service: ServiceDep) -> JSONResponse:
        return _queue(service, CommandKind.PAUSE)

    # -- the registry ----------------------------------------------------------------------------------------

    @app.post("/rollback", tags=["model"], dependencies=Write, status_code=202, responses=ERRORS,
              response_model=CommandOut, summary="Roll back to the version before, or to one that served before")
    def rollback(service: ServiceDep, body: RollbackRequest | None = None) -> JSONResponse:
        to = body.to.strip() if body is not None and body.to is not None else None
        try:
            to = check_rollback(service.ctx, to=to)  # the CLI's check too (engine.commands)
        except InputError as exc:
            raise ApiError(422, f"to: {exc}", field="to") from None
        return _queue(service, CommandKind.ROLLBACK, {"to": to} if to else {})

    @app.get("/models", tags=["model"], summary="The model registry: the champion, the champion alias's history, "
                                                   "the fallback order and every version")
    def models(service: ServiceDep,
               history: Annotated[int, Query(ge=0, le=10_000, description="how many moves of the champion alias, "
                                                                          "newest first")] = 100
               ) -> dict[str, Any]:
        owner = ModelRegistry(service.ctx)
        try:
            pointer = owner.pointer()
        except ModelLoadError as exc:
            raise ApiError(503, f"the active pointer cannot be read: {exc}") from None
        champion = None
        if pointer is not None:
            champion = {**(get_model(service.ctx.db, pointer.active.version) or {"version": pointer.active.version}),
                        "deployed_at": pointer.deployed_at}
        moves = owner.history()[::-1][:history]
        return plain({
            "champion": _file_names(service, champion),
            "history": [asdict(move) for move in moves],
            "fallback_order": [ref.version for ref in pointer.history] if pointer is not None else [],
            "versions": _file_names(service, list_models(service.ctx.db)),
        })

    @app.get("/events", tags=["model"], summary="Recent events (decisions, deployments, drift, fallbacks), newest first")
    def events(service: ServiceDep,
               limit: Annotated[int, Query(ge=1, le=1000, description="how many events")] = 50,
               kind: Annotated[EventKind | None, Query(description="only this kind, e.g. gate")] = None,
               ) -> dict[str, Any]:
        # Stored messages keep the operator's paths (the CLI's `events` shows them); an API client sees none.
        events = recent_events(service.ctx.db, limit=limit, kind=kind)
        return plain({"events": [{**e, "message": service.public(e["message"]) if e["message"] else e["message"]}
                                      for e in events]})


def _predict_one(service: Service, clf: Classifier, text: str) -> JSONResponse:
    try:
        p = clf.predict(text)
    except InputError as exc:
        raise ApiError(422, f"text: {exc}", field="text") from None
    service.remember([p.query_id])
    return JSONResponse(_prediction(p))


def _predict_batch(service: Service, clf: Classifier, texts: list[str]) -> JSONResponse:
    limit = service.settings.api_max_batch
    if not texts:
        raise ApiError(422, "texts is empty: send at least one text", field="texts")
    if len(texts) > limit:
        raise ApiError(422, f"texts has {len(texts):,} items, over the limit of {limit:,}: split it into "
                            f"requests of at most {limit:,} (setting api_max_batch)", field="texts")
    try:
        predictions = clf.predict_many(texts)
    except InputError as exc:
        where = _bad_text(clf, texts)
        raise ApiError(422, f"{where}: {exc}", field=where) from None
    service.remember([p.query_id for p in predictions])
    return JSONResponse({"predictions": [_prediction(p) for p in predictions]})


def _file_names(service: Service, value: Any) -> Any:
    """``value`` (a model row, or rows, as stored) with an adopted model's file named by its name alone and its note
    without paths: where the file lay on the operator's machine is not an API reader's business (the CLI's
    ``models`` shows it).

    >>> _file_names(None, [{"params": {"adopted": {"file": "/srv/team/model.joblib", "sha256": "ab"}}}])
    [{'params': {'adopted': {'file': 'model.joblib', 'sha256': 'ab'}}}]
    """
    if isinstance(value, list):
        return [_file_names(service, v) for v in value]
    if not isinstance(value, dict):
        return value
    shown = {k: _file_names(service, v) for k, v in value.items()}
    adopted = value.get("adopted")
    if isinstance(adopted, dict) and isinstance(adopted.get("file"), str):
        shown["adopted"] = {**adopted, "file": PurePath(adopted["file"]).name}
        if isinstance(adopted.get("note"), str) and service is not None:
            shown["adopted"]["note"] = service.public(adopted["note"])
    return shown


def _public_dict(service: Service, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: service.public(v) if isinstance(v, str) else v for k, v in value.items()}
    return value


def _bad_text(clf: Classifier, texts: list[str]) -> str:
    """The field of the first text of a batch the classifier refuses, e.g. ``texts[3]``."""
    for i, text in enumerate(texts):
        try:
            clf.check(text)
        except InputError:
            return f"texts[{i}]"
    return "texts"


# -- serving it ----------------------------------------------------------------------------------------------


def check_exposure(host: str, token: str | None) -> None:
    """Refuse (SettingsError) to listen beyond this machine without an action token."""
    if token is None and not is_loopback(host):
        raise SettingsError(
            f"refusing to listen on {host or 'every address'} without an action token: anyone who can reach it could "
            "retrain, roll back and log labels. Set action_token in .streamlit/secrets.toml (see the README), "
            f"or listen on {DEFAULT_HOST}")


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free one); SettingsError saying why not."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65_535:
        raise SettingsError(f"port {port!r} is not a TCP port: use a whole number from 1 to 65535 (0: any free port)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SettingsError(f"cannot listen on {host!r}: {exc.strerror}: give an IP address or a known host name") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise SettingsError(f"cannot listen on {host}:{port}: {exc.strerror}: choose another --port "
                            "(or stop what uses it)") from None
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, access_log: bool = True,
          announce=print) -> None:
    """Run the API on ``host:port`` until SIGINT or SIGTERM (uvicorn's graceful stop; buffered queries are written).

    Raises SettingsError before listening when the address is exposed without a token, the
    secrets file is not valid TOML, or the port cannot be taken.
    """
    import uvicorn

    token = action_token()
    check_exposure(host, token)
    sock = listen(host, port)
    ctx = Context.open(settings)
    app = create_app(ctx, token=token, host=host)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    announce(f"Retrainer API on http://{shown}:{bound} (docs at /docs); data directory {settings.home}; "
             f"writes {'need the action token' if token else 'are open to this machine only'}")
    config = uvicorn.Config(app, log_config=None, access_log=access_log, server_header=False, proxy_headers=False,
                            timeout_graceful_shutdown=10)
    _server_class()(config).run(sockets=[sock])
    log.info("API stopped cleanly")


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, except that a graceful stop on SIGTERM or SIGINT ends the process with 0 (like the
        worker) instead of raising the signal again once the server has stopped (uvicorn's ``capture_signals``)."""

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            originals = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in originals.items():
                    signal.signal(sig, handler)

    return Server
