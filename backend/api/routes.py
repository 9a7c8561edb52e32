"""The monitor API (Starlette): Stellantis-style monitor resources for fleets and vehicles,
delivery history and dead letters, ``/healthz``, ``/metrics`` and ``/openapi.json``.

Errors are ``xError``-like bodies (reference §2): ``{code, uuid, message, timestamp, problems}``
with ``code`` = HTTP status x 100. Authentication: ``Authorization: Bearer <token>``; 401 when
missing or unknown, 403 when the token lacks the operation's scope or does not reach the fleet or
vehicle of the path; a monitor or delivery out of the token's reach is a 404
(``backend.api.tenancy``).
``/fleets/{fleetId}/vehicles/{vin}`` provisions vehicles into fleets (``admin`` scope): ingest
routes events by that record. Attribute values come back masked (write-only).

Threads: a handler is plain synchronous code run by ``run_in_threadpool`` (SQLite reads and
writes block); the event loop authenticates, and reads the bounded request body when the
handler asks for it (``anyio.from_thread``).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from anyio import from_thread
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.errors import Problem
from agent.wire import format_date, uuid7, valid_topic_level
from backend.api.docs import docs_routes
from backend.api.history import (
    RECENT_EVENTS,
    event_view,
    fleet_view,
    link,
    parse_moment,
    vehicle_links,
    vehicle_state_view,
)
from backend.api.openapi import RESEND_BATCH, openapi_document
from backend.api.tenancy import (
    find_token,
    fleets_reached,
    keep_masked,
    masked,
    masked_url,
    reaches_owner,
)
from backend.config import ADMIN, ApiToken, LimitsConfig
from backend.delivery.egress import STRICT, NetworkPolicy, literal_refusal
from backend.errors import ApiProblem, PayloadError
from backend.ingest.guard import decode_json
from backend.metrics import Metrics
from backend.monitor_channel import MonitorChannel
from backend.monitors import CALLBACK_PATH, validate
from backend.store.records import (
    DELIVERY_STATES,
    SETTABLE_STATUSES,
    DeliveryView,
    EventQuery,
    MonitorRecord,
    Store,
    VehicleRecord,
)

log = logging.getLogger(__name__)
HAL = "application/hal+json"
_RANGE = re.compile(r"^([0-9]+)-([0-9]*)$")
MAX_PAGE = 60
PAGING_KEYS = ("indexRange", "pageSize")
SCOPE_PATH = {"fleet": "fleets", "vehicle": "vehicles"}
DEFAULT_LIMITS = LimitsConfig()


@dataclass(frozen=True, slots=True)
class Part:
    """One part of the process as ``/healthz`` reports it."""

    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class ApiContext:
    store: Store
    channel: MonitorChannel
    metrics: Metrics
    tokens: tuple[ApiToken, ...]
    allow_insecure_http: bool = False
    policy: NetworkPolicy = STRICT  # refuses literal IP targets it does not allow
    base_url: str = ""
    clock: Callable[[], float] = time.time
    max_age: float = 3 * 24 * 3600.0
    limits: LimitsConfig = DEFAULT_LIMITS
    health: Callable[[], dict[str, Part]] = dict  # the parts this process runs (not the store)


def _iso(moment: float | None) -> str | None:
    return None if moment is None else format_date(datetime.fromtimestamp(moment, tz=UTC))


def error_body(status: int, message: str, problems: tuple[Problem, ...] = ()) -> dict[str, Any]:
    return {
        "code": status * 100,
        "uuid": str(uuid.uuid4()),
        "message": message,
        "timestamp": format_date(datetime.now(tz=UTC)),
        "problems": [{"path": p.path, "message": p.message} for p in problems],
    }


def _hal(body: object, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=HAL)


# -- request pieces ---------------------------------------------------------------------------


def _authorize(ctx: ApiContext, request: Request, scope: str) -> ApiToken:
    header = request.headers.get("authorization", "")
    kind, _, token = header.partition(" ")
    found = find_token(ctx.tokens, token) if kind.lower() == "bearer" else None
    if found is None:
        raise ApiProblem(401, "missing or invalid bearer token")
    if scope not in found.scopes:
        raise ApiProblem(403, f"the token lacks the scope {scope!r}")
    return found


def _token(request: Request) -> ApiToken:
    token: ApiToken = request.state.token
    return token


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (announced by
    Content-Length or not): a large body is never held in memory whole."""
    announced = request.headers.get("content-length", "")
    if announced.isascii() and announced.isdigit() and int(announced) > limit:
        raise ApiProblem(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiProblem(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_body(ctx: ApiContext, request: Request) -> Any:
    """The JSON body, read by the event loop on behalf of the handler's worker thread (when the
    handler gets to it: a request refused before is never read)."""
    limits = ctx.limits
    raw = from_thread.run(_bounded_body, request, limits.max_request_bytes)
    try:
        return decode_json(raw, max_bytes=limits.max_request_bytes, limits=limits)
    except PayloadError as exc:
        status = 413 if exc.reason == "too_large" else 400
        raise ApiProblem(
            status, "the body is not acceptable JSON", (Problem("$", str(exc)),)
        ) from exc


MAX_INDEX = 2**53


def _paging(request: Request) -> tuple[int, int]:
    """``indexRange`` (``\\d+-\\d*``, default ``0-``) and ``pageSize`` (1-60, default 60)."""
    problems = []
    size_text = request.query_params.get("pageSize", str(MAX_PAGE))
    size = int(size_text) if size_text.isascii() and size_text.isdigit() else 0
    if not 1 <= size <= MAX_PAGE:
        problems.append(Problem("pageSize", f"must be an integer from 1 to {MAX_PAGE}"))
    match = _RANGE.match(request.query_params.get("indexRange", "0-"))
    if match is None:
        problems.append(Problem("indexRange", "must look like 'start-' or 'start-end'"))
    if problems or match is None:
        raise ApiProblem(400, "invalid paging parameters", tuple(problems))
    start = int(match.group(1))
    if start > MAX_INDEX:  # SQLite integers are 64-bit; no collection is anywhere near this
        raise ApiProblem(400, "invalid paging", (Problem("indexRange", "start is too large"),))
    if match.group(2):
        end = int(match.group(2))
        if end < start:
            raise ApiProblem(400, "invalid paging", (Problem("indexRange", "end before start"),))
        size = min(size, end - start + 1)
    return start, size


def _owner(ctx: ApiContext, request: Request) -> tuple[str, str]:
    """The fleet or vehicle of the path, if the request's token reaches it (403 otherwise)."""
    if "fleetId" in request.path_params:
        scope, owner = "fleet", request.path_params["fleetId"]
    else:
        scope, owner = "vehicle", request.path_params["vin"]
    if not valid_topic_level(owner):
        raise ApiProblem(400, f"invalid {scope} id", (Problem("path", f"{owner!r} is not valid"),))
    if not reaches_owner(_token(request), scope, owner, ctx.store.vehicle_fleet):
        raise ApiProblem(403, f"the token does not reach this {scope}")
    return scope, owner


def _existing(ctx: ApiContext, request: Request) -> MonitorRecord:
    scope, owner = _owner(ctx, request)
    record = ctx.store.get_monitor(request.path_params["monitorId"])
    if record is None or record.scope != scope or record.owner != owner:
        raise ApiProblem(404, "no such monitor")
    return record


def _checked(ctx: ApiContext, body: Any, monitor_id: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiProblem(400, "invalid monitor", (Problem("$", "must be a JSON object"),))
    checked = validate(body, monitor_id, allow_insecure_http=ctx.allow_insecure_http)
    problems = list(checked.problems)
    if checked.spec is not None:
        problems += literal_refusal(checked.spec.target, ctx.policy, CALLBACK_PATH + ".target")
    if problems:
        raise ApiProblem(400, "invalid monitor", tuple(problems))
    definition = dict(body)
    definition.pop("status", None)
    return definition


# -- representations --------------------------------------------------------------------------


def _links(ctx: ApiContext, record: MonitorRecord) -> dict[str, Any]:
    owner = f"/{SCOPE_PATH[record.scope]}/{record.owner}"
    me = f"{owner}/monitors/{record.monitor_id}"
    by_id = f"/monitors/{record.monitor_id}"
    return {
        "self": link(ctx.base_url, me),
        "monitor": link(ctx.base_url, by_id),
        record.scope: link(ctx.base_url, owner),
        "deliveries": link(ctx.base_url, f"{by_id}/deliveries"),
        "events": link(ctx.base_url, f"{by_id}/events"),
    }


def monitor_ref(ctx: ApiContext, record: MonitorRecord) -> dict[str, Any]:
    return {
        "monitorId": record.monitor_id,
        "status": record.status,
        "delivery": ctx.channel.delivery(record.monitor_id),
        "createdAt": _iso(record.created_at),
        "updatedAt": _iso(record.updated_at),
        "_links": _links(ctx, record),
    }


def _addressed(ctx: ApiContext, record: MonitorRecord, vin: str) -> bool:
    """Whether the monitor is meant for this vehicle: any vehicle can publish a state report on
    its own topic for any monitor id; another fleet's reports are not shown."""
    if record.scope == "vehicle":
        return vin == record.owner
    return ctx.store.vehicle_fleet(vin) == record.owner


def monitor_view(ctx: ApiContext, record: MonitorRecord) -> dict[str, Any]:
    vehicles = [
        {
            "vin": s.vin,
            "state": s.state,
            "reasons": s.reasons,
            "hash": s.definition_hash,
            "at": s.at,
            "obdRequestsPerMinute": ctx.channel.obd_cost(record.monitor_id, s.vin),
            "missingData": ctx.channel.missing_data(record, s.vin),
        }
        for s in ctx.store.vehicle_states(record.monitor_id)
        if _addressed(ctx, record, s.vin)
    ]
    shown = masked(record.definition)
    return {**monitor_ref(ctx, record), "monitor": shown, "vehicles": vehicles}


def delivery_view(ctx: ApiContext, view: DeliveryView, *, live: bool = True) -> dict[str, Any]:
    """``live``: whether its monitor still exists (a deleted one's deliveries stay readable;
    a link to the monitor would not resolve, so there is none)."""
    links = {"self": link(ctx.base_url, f"/deliveries/{view.delivery_id}")}
    if live:
        links["monitor"] = link(ctx.base_url, f"/monitors/{view.monitor_id}")
    return {
        "_links": links,
        "deliveryId": view.delivery_id,
        "monitorId": view.monitor_id,
        "state": view.state,
        "url": masked_url(view.url),
        "eventIds": view.event_ids,
        "attemptCount": view.attempts,
        "createdAt": _iso(view.created_at),
        "nextAttemptAt": _iso(view.next_at),
        "deliveredAt": _iso(view.delivered_at),
        "reason": view.reason,
        "attempts": [
            {
                "number": a.number,
                "startedAt": _iso(a.started_at),
                "durationMs": round(a.duration * 1000, 1),
                "outcome": a.outcome,
                "statusCode": a.status_code,
                "error": a.error,
            }
            for a in view.history
        ],
    }


def collection(
    ctx: ApiContext,
    request: Request,
    key: str,
    items: list[Any],
    total: int,
    *,
    start: int,
    size: int,
) -> dict[str, Any]:
    """A page, with links of the same form as every other (``base_url`` + path) that keep the
    request's filters."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in PAGING_KEYS]

    def page(offset: int) -> dict[str, str]:
        query = urlencode([*kept, ("indexRange", f"{offset}-"), ("pageSize", str(size))])
        return link(ctx.base_url, f"{request.url.path}?{query}")

    last = max(0, (total - 1) // size * size)
    links = {"self": page(start), "first": page(0), "last": page(last)}
    if start + size < total:
        links["next"] = page(start + size)
    if start > 0:
        links["prev"] = page(max(0, start - size))
    return {
        "_links": links,
        "total": total,
        "totalPage": (total + size - 1) // size,
        "currentPage": start // size,
        "_embedded": {key: items},
    }


# -- handlers ---------------------------------------------------------------------------------

# A handler runs in a worker thread (run_in_threadpool): the store's SQLite work blocks.
Handler = Callable[[ApiContext, Request], Response]


def create_monitor(ctx: ApiContext, request: Request) -> Response:
    scope, owner = _owner(ctx, request)
    now = ctx.clock()
    monitor_id = uuid7(int(now * 1000))
    definition = _checked(ctx, _json_body(ctx, request), monitor_id)
    record = MonitorRecord(monitor_id, scope, owner, definition, "Running", now, now)
    ctx.store.create_monitor(record)
    ctx.channel.publish(record)
    return _hal(monitor_ref(ctx, record), 202)


def list_monitors(ctx: ApiContext, request: Request) -> Response:
    scope, owner = _owner(ctx, request)
    start, size = _paging(request)
    records, total = ctx.store.list_monitors(scope, owner, start, size)
    items = [monitor_view(ctx, r) for r in records]
    return _hal(collection(ctx, request, "monitors", items, total, start=start, size=size))


def read_monitor(ctx: ApiContext, request: Request) -> Response:
    return _hal(monitor_view(ctx, _existing(ctx, request)))


def replace_monitor(ctx: ApiContext, request: Request) -> Response:
    record = _existing(ctx, request)
    body = _json_body(ctx, request)
    if isinstance(body, dict):
        kept = keep_masked(body, record.definition)  # a definition read back, masked values kept
        if kept:
            raise ApiProblem(400, "invalid monitor", tuple(kept))
    definition = _checked(ctx, body, record.monitor_id)
    ctx.store.replace_monitor(record.monitor_id, definition, ctx.clock())
    fresh = ctx.store.get_monitor(record.monitor_id) or record
    ctx.channel.publish(fresh)
    return _hal(monitor_ref(ctx, fresh), 202)


def delete_monitor(ctx: ApiContext, request: Request) -> Response:
    record = _existing(ctx, request)
    ctx.store.delete_monitor(record.monitor_id, ctx.clock())
    ctx.channel.clear(record)
    return Response(status_code=204)


def set_status(ctx: ApiContext, request: Request) -> Response:
    record = _existing(ctx, request)
    body = _json_body(ctx, request)
    status = body.get("status") if isinstance(body, dict) else None
    if status not in SETTABLE_STATUSES:
        problem = Problem("$.status", f"must be {' or '.join(map(repr, SETTABLE_STATUSES))}")
        raise ApiProblem(400, "invalid status", (problem,))
    ctx.store.set_monitor_status(record.monitor_id, status, ctx.clock())
    fresh = ctx.store.get_monitor(record.monitor_id) or record
    ctx.channel.publish(fresh)
    return _hal(monitor_ref(ctx, fresh), 202)


def _reachable_monitor(ctx: ApiContext, request: Request, monitor_id: str) -> bool:
    """A monitor (deleted ones too) whose fleet or vehicle the request's token reaches."""
    owner = ctx.store.monitor_owner(monitor_id)
    return owner is not None and reaches_owner(_token(request), *owner, ctx.store.vehicle_fleet)


def _monitor_by_id(ctx: ApiContext, request: Request) -> MonitorRecord:
    record = ctx.store.get_monitor(request.path_params["monitorId"])
    if record is None or not _reachable_monitor(ctx, request, record.monitor_id):
        raise ApiProblem(404, "no such monitor")
    return record


def _delivery(ctx: ApiContext, request: Request) -> DeliveryView:
    view = ctx.store.get_delivery(request.path_params["deliveryId"])
    if view is None or not _reachable_monitor(ctx, request, view.monitor_id):
        raise ApiProblem(404, "no such delivery")
    return view


def list_deliveries(ctx: ApiContext, request: Request) -> Response:
    record = _monitor_by_id(ctx, request)
    start, size = _paging(request)
    state = request.query_params.get("state")
    if state is not None and state not in DELIVERY_STATES:
        problem = Problem("state", f"one of {', '.join(DELIVERY_STATES)}")
        raise ApiProblem(400, "invalid state filter", (problem,))
    if request.url.path.endswith("/dead-letters"):
        state = "dead"
    views, total = ctx.store.deliveries(record.monitor_id, state, start, size)
    items = [delivery_view(ctx, v) for v in views]
    return _hal(collection(ctx, request, "deliveries", items, total, start=start, size=size))


def read_delivery(ctx: ApiContext, request: Request) -> Response:
    view = _delivery(ctx, request)
    live = ctx.store.get_monitor(view.monitor_id) is not None
    return _hal(delivery_view(ctx, view, live=live))


def resend_delivery(ctx: ApiContext, request: Request) -> Response:
    delivery_id = _delivery(ctx, request).delivery_id
    if not ctx.store.resend(delivery_id, ctx.clock(), ctx.max_age):
        raise ApiProblem(409, "only a dead-lettered delivery can be re-sent")
    view = ctx.store.get_delivery(delivery_id)
    assert view is not None
    live = ctx.store.get_monitor(view.monitor_id) is not None
    return _hal(delivery_view(ctx, view, live=live), 202)


def resend_dead_letters(ctx: ApiContext, request: Request) -> Response:
    """Re-send a monitor's dead letters, at most ``RESEND_BATCH`` per call (a short write)."""
    record = _monitor_by_id(ctx, request)
    resent, remaining = ctx.store.resend_dead(record.monitor_id, ctx.clock(), RESEND_BATCH)
    log.info("monitor %s: %d dead letters re-sent, %d left", record.monitor_id, resent, remaining)
    body = {"monitorId": record.monitor_id, "resent": resent, "remaining": remaining}
    return JSONResponse(body, status_code=202)


# -- vehicles of a fleet (provisioned by an admin token) ----------------------------------------


def _vehicle_path(request: Request) -> tuple[str, str]:
    fleet_id, vin = request.path_params["fleetId"], request.path_params["vin"]
    bad = [
        Problem("path", f"{v!r} is not valid") for v in (fleet_id, vin) if not valid_topic_level(v)
    ]
    if bad:
        raise ApiProblem(400, "invalid fleet id or VIN", tuple(bad))
    return fleet_id, vin


def vehicle_view(ctx: ApiContext, vehicle: VehicleRecord) -> dict[str, Any]:
    return {
        "vin": vehicle.vin,
        "fleetId": vehicle.fleet_id,
        "createdAt": _iso(vehicle.created_at),
        "_links": vehicle_links(ctx.base_url, vehicle.vin, vehicle.fleet_id),
    }


def put_vehicle(ctx: ApiContext, request: Request) -> Response:
    """Provision a vehicle in a fleet (or move it there): its events reach this fleet's monitors."""
    fleet_id, vin = _vehicle_path(request)
    now = ctx.clock()
    created = ctx.store.put_vehicle(vin, fleet_id, now)
    log.info("vehicle %s provisioned in fleet %s", vin, fleet_id)
    stored = ctx.store.get_vehicle(vin) or VehicleRecord(vin, fleet_id, now)
    return _hal(vehicle_view(ctx, stored), 201 if created else 200)


def list_vehicles(ctx: ApiContext, request: Request) -> Response:
    _scope, fleet_id = _owner(ctx, request)
    start, size = _paging(request)
    vehicles, total = ctx.store.list_vehicles(fleet_id, start, size)
    items = [vehicle_view(ctx, v) for v in vehicles]
    return _hal(collection(ctx, request, "vehicles", items, total, start=start, size=size))


def delete_vehicle(ctx: ApiContext, request: Request) -> Response:
    fleet_id, vin = _vehicle_path(request)
    if not ctx.store.delete_vehicle(fleet_id, vin):
        raise ApiProblem(404, "no such vehicle in this fleet")
    log.info("vehicle %s removed from fleet %s", vin, fleet_id)
    return Response(status_code=204)


# -- what happened: events, last known state, resources by id (issue 18) ------------------------


def read_monitor_by_id(ctx: ApiContext, request: Request) -> Response:
    """A live monitor by its id alone, wherever it belongs (the deliveries' links use it)."""
    return _hal(monitor_view(ctx, _monitor_by_id(ctx, request)))


def _reached_fleets(request: Request) -> tuple[str, ...] | None:
    return fleets_reached(_token(request))


def _event_query(request: Request, **fixed: Any) -> EventQuery:
    params = request.query_params
    problems = [
        Problem(name, "is not a valid id")
        for name in ("vin", "monitorId")
        if name in params and not valid_topic_level(params[name])
    ]
    if problems:
        raise ApiProblem(400, "invalid filter", tuple(problems))
    query = {
        "vin": params.get("vin"),
        "monitor_id": params.get("monitorId"),
        "since": parse_moment("from", params.get("from")),
        "until": parse_moment("to", params.get("to")),
        "fleets": _reached_fleets(request),
        **fixed,
    }
    return EventQuery(**query)


def _events_page(ctx: ApiContext, request: Request, query: EventQuery) -> Response:
    start, size = _paging(request)
    events, total = ctx.store.events_page(query, start, size)
    # links only to what resolves: a monitor deleted since, a vehicle removed since have none
    monitors = {m for m in {e.monitor_id for e in events} if ctx.store.get_monitor(m)}
    vehicles = {v for v in {e.vin for e in events} if ctx.store.get_vehicle(v)}
    items = [event_view(ctx.base_url, e, monitors, vehicles) for e in events]
    return _hal(collection(ctx, request, "events", items, total, start=start, size=size))


def list_owner_events(ctx: ApiContext, request: Request) -> Response:
    """Events of a fleet's vehicles (``?vin=``), or of one vehicle, newest first."""
    scope, owner = _owner(ctx, request)
    if scope == "fleet":
        reached = _reached_fleets(request)
        fleets = (owner,) if reached is None or owner in reached else ()
        return _events_page(ctx, request, _event_query(request, fleets=fleets))
    return _events_page(ctx, request, _event_query(request, vin=owner))


def list_monitor_events(ctx: ApiContext, request: Request) -> Response:
    """Events received for one monitor (deleted ones too), of the fleets the token reaches."""
    monitor_id = request.path_params["monitorId"]
    if not _reachable_monitor(ctx, request, monitor_id):
        raise ApiProblem(404, "no such monitor")
    return _events_page(ctx, request, _event_query(request, monitor_id=monitor_id))


def read_vehicle(ctx: ApiContext, request: Request) -> Response:
    """A vehicle's last known state: last status message, last position, last values."""
    _scope, vin = _owner(ctx, request)
    vehicle = ctx.store.get_vehicle(vin)
    if vehicle is None:
        raise ApiProblem(404, "no such vehicle")
    query = EventQuery(vin=vin, fleets=_reached_fleets(request))
    recent, _total = ctx.store.events_page(query, 0, RECENT_EVENTS)
    status = ctx.store.vehicle_status(vin)
    return _hal(vehicle_state_view(ctx.base_url, vehicle, status, recent))


def read_fleet(ctx: ApiContext, request: Request) -> Response:
    _scope, fleet_id = _owner(ctx, request)
    _vehicles, total = ctx.store.list_vehicles(fleet_id, 0, 1)
    return _hal(fleet_view(ctx.base_url, fleet_id, total))


# -- the app ----------------------------------------------------------------------------------


def _endpoint(ctx: ApiContext, handler: Handler, scope: str) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        try:
            request.state.token = _authorize(ctx, request, scope)
            return await run_in_threadpool(handler, ctx, request)
        except ApiProblem as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            body = error_body(exc.status, exc.message, exc.problems)
            return JSONResponse(body, status_code=exc.status, headers=headers)

    return endpoint


def _store_part(ctx: ApiContext) -> Part:
    try:
        depth = ctx.store.depth()
    except Exception as exc:  # StoreError, or a store gone wrong another way: it fails health
        return Part(False, f"{type(exc).__name__}: {exc}")
    return Part(True, "answers; deliveries " + ", ".join(f"{k} {v}" for k, v in depth.items()))


def build_api(ctx: ApiContext) -> Starlette:
    def r(path: str, handler: Handler, scope: str, methods: list[str]) -> Route:
        return Route(path, _endpoint(ctx, handler, scope), methods=methods)

    routes: list[Route] = []
    for owner in ("/fleets/{fleetId}", "/vehicles/{vin}"):
        one = owner + "/monitors/{monitorId}"
        routes += [
            r(owner + "/monitors", create_monitor, "monitors:write", ["POST"]),
            r(owner + "/monitors", list_monitors, "monitors:read", ["GET"]),
            r(one, read_monitor, "monitors:read", ["GET"]),
            r(one, replace_monitor, "monitors:write", ["PUT"]),
            r(one, delete_monitor, "monitors:write", ["DELETE"]),
            r(one + "/status", set_status, "monitors:write", ["PUT"]),
        ]
    vehicle = "/fleets/{fleetId}/vehicles/{vin}"
    routes += [
        r("/fleets/{fleetId}/vehicles", list_vehicles, "monitors:read", ["GET"]),
        r("/fleets/{fleetId}", read_fleet, "monitors:read", ["GET"]),
        r("/fleets/{fleetId}/events", list_owner_events, "deliveries:read", ["GET"]),
        r("/vehicles/{vin}", read_vehicle, "deliveries:read", ["GET"]),
        r("/vehicles/{vin}/events", list_owner_events, "deliveries:read", ["GET"]),
        r("/monitors/{monitorId}", read_monitor_by_id, "monitors:read", ["GET"]),
        r("/monitors/{monitorId}/events", list_monitor_events, "deliveries:read", ["GET"]),
        r(vehicle, put_vehicle, ADMIN, ["PUT"]),
        r(vehicle, delete_vehicle, ADMIN, ["DELETE"]),
        r("/monitors/{monitorId}/deliveries", list_deliveries, "deliveries:read", ["GET"]),
        r("/monitors/{monitorId}/dead-letters", list_deliveries, "deliveries:read", ["GET"]),
        r(
            "/monitors/{monitorId}/dead-letters/resend",
            resend_dead_letters,
            "deliveries:write",
            ["POST"],
        ),
        r("/deliveries/{deliveryId}", read_delivery, "deliveries:read", ["GET"]),
        r("/deliveries/{deliveryId}/resend", resend_delivery, "deliveries:write", ["POST"]),
    ]
    document = openapi_document()

    async def openapi(_request: Request) -> Response:
        return JSONResponse(document)

    async def healthz(_request: Request) -> Response:
        parts = {**ctx.health(), "store": await run_in_threadpool(_store_part, ctx)}
        failing = sorted(name for name, part in parts.items() if not part.ok)
        body = {
            "status": "failing" if failing else "ok",
            "failing": failing,
            "parts": {n: {"ok": p.ok, "detail": p.detail} for n, p in sorted(parts.items())},
        }
        return JSONResponse(body, status_code=503 if failing else 200)

    async def metrics(_request: Request) -> Response:
        ctx.metrics.set_depth(await run_in_threadpool(ctx.store.depth))
        ctx.metrics.sync_capability_warnings(ctx.channel.capability_warnings)
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")

    routes += [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=[*routes, *docs_routes()])
