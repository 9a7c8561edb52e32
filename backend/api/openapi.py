"""The OpenAPI 3.1 document of the monitor API, written by hand (served at ``/openapi.json``).

The ``MonitorParameter`` schema is deliberately open (``type: object`` with the required keys):
its full validation lives in ``agent.monitors.model.parse_monitor``, and a 400 lists every
problem it finds.
"""

from __future__ import annotations

from typing import Any

from agent import __version__
from backend.api.history import RECENT_EVENTS
from backend.monitor_channel import DELIVERIES
from backend.store.records import (
    ATTEMPT_OUTCOMES,
    DELIVERY_STATES,
    MONITOR_STATUSES,
    REPORTED_STATES,
    SETTABLE_STATUSES,
)

_ERROR = {"$ref": "#/components/schemas/XError"}

EXAMPLE_MONITOR: dict[str, Any] = {
    "label": "Oil too hot",
    "subscribeParam": {
        "refreshEvent": 300,
        "retryPolicy": {"policy": "Bounded", "retryNumber": 3, "retryDelay": 60},
        "batchNotify": {"size": 10, "timeWindow": 30},
        "callback": {
            "webhook": {
                "target": "https://fleet.example.com/webhooks/edgemon",
                "name": "fleet-ops",
                "attributes": [
                    {"type": "Header", "key": "X-Vehicle", "value": "$vin"},
                    {"type": "Body", "key": "monitor", "value": "$monitorID"},
                ],
            }
        },
    },
    "extendedEventParam": ["vehicle.position"],
    "triggerParam": {
        "triggers": [
            {
                "name": "hot",
                "data": {
                    "data": "vehicle.engines.thermic.oil.temp",
                    "op": "greaterThan",
                    "value": ["130"],
                },
            }
        ],
        "boolExp": "hot",
    },
}


def _json(schema: dict[str, Any], media: str = "application/hal+json") -> dict[str, Any]:
    return {"content": {media: {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid request: every problem is listed",
        401: "Missing or invalid bearer token",
        403: "The token lacks the scope, or does not reach this fleet or vehicle",
        404: "Not found",
        409: "Conflict",
        413: "The body is larger than [limits] max_request_bytes",
    }
    return {str(c): {"description": text[c], **_json(_ERROR, "application/json")} for c in codes}


def _param(name: str, where: str = "path", **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema or {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
    }


_PAGING = [
    _param("indexRange", "query", type="string", pattern=r"^\d+-\d*$", default="0-"),
    _param("pageSize", "query", type="integer", minimum=1, maximum=60, default=60),
]


def _monitor_paths(prefix: str, owner: dict[str, Any], tag: str) -> dict[str, Any]:
    mid = _param("monitorId")
    ref = {"$ref": "#/components/schemas/MonitorRef"}
    body: dict[str, Any] = {
        "required": True,
        **_json({"$ref": "#/components/schemas/MonitorParameter"}, "application/json"),
    }
    body["content"]["application/json"]["example"] = EXAMPLE_MONITOR
    return {
        f"{prefix}/monitors": {
            "parameters": [owner],
            "get": {
                "tags": [tag],
                "summary": "List monitors",
                "parameters": _PAGING,
                "responses": {
                    "200": {
                        "description": "A page",
                        **_json({"$ref": "#/components/schemas/Monitors"}),
                    },
                    **_errors(400, 401, 403),
                },
            },
            "post": {
                "tags": [tag],
                "summary": "Create a monitor",
                "requestBody": body,
                "responses": {
                    "202": {"description": "Accepted", **_json(ref)},
                    **_errors(400, 401, 403, 413),
                },
            },
        },
        f"{prefix}/monitors/{{monitorId}}": {
            "parameters": [owner, mid],
            "get": {
                "tags": [tag],
                "summary": "Read a monitor with each vehicle's applied/rejected state",
                "responses": {
                    "200": {
                        "description": "The monitor",
                        **_json({"$ref": "#/components/schemas/Monitor"}),
                    },
                    **_errors(400, 401, 403, 404),
                },
            },
            "put": {
                "tags": [tag],
                "summary": "Replace a monitor (the whole definition)",
                "requestBody": body,
                "responses": {
                    "202": {"description": "Accepted", **_json(ref)},
                    **_errors(400, 401, 403, 404, 413),
                },
            },
            "delete": {
                "tags": [tag],
                "summary": "Delete a monitor (clears its retained topic)",
                "responses": {"204": {"description": "Deleted"}, **_errors(400, 401, 403, 404)},
            },
        },
        f"{prefix}/monitors/{{monitorId}}/status": {
            "parameters": [owner, mid],
            "put": {
                "tags": [tag],
                "summary": "Pause or resume a monitor",
                "requestBody": {
                    "required": True,
                    **_json(
                        {"$ref": "#/components/schemas/MonitorStatusSetter"}, "application/json"
                    ),
                },
                "responses": {
                    "202": {"description": "Accepted", **_json(ref)},
                    **_errors(400, 401, 403, 404, 413),
                },
            },
        },
    }


def _delivery_paths() -> dict[str, Any]:
    mid = _param("monitorId")
    did = _param("deliveryId")
    page = {"$ref": "#/components/schemas/Deliveries"}
    one = {"$ref": "#/components/schemas/Delivery"}
    state = _param("state", "query", type="string", enum=list(DELIVERY_STATES))
    return {
        "/monitors/{monitorId}/deliveries": {
            "parameters": [mid],
            "get": {
                "tags": ["deliveries"],
                "summary": "Delivery history of a monitor, with every attempt",
                "parameters": [*_PAGING, state],
                "responses": {
                    "200": {"description": "A page", **_json(page)},
                    **_errors(400, 401, 403, 404),
                },
            },
        },
        "/monitors/{monitorId}/dead-letters": {
            "parameters": [mid],
            "get": {
                "tags": ["deliveries"],
                "summary": "Dead-lettered deliveries of a monitor",
                "parameters": _PAGING,
                "responses": {
                    "200": {"description": "A page", **_json(page)},
                    **_errors(400, 401, 403, 404),
                },
            },
        },
        "/monitors/{monitorId}/dead-letters/resend": {
            "parameters": [mid],
            "post": {
                "tags": ["deliveries"],
                "summary": "Re-send a monitor's dead letters, oldest first (a new round each)",
                "description": f"At most {RESEND_BATCH} per call, in one short transaction; "
                "call again while `remaining` is above 0. A deleted monitor has none to re-send.",
                "responses": {
                    "202": {
                        "description": "Queued",
                        **_json({"$ref": "#/components/schemas/Resent"}, "application/json"),
                    },
                    **_errors(401, 403, 404),
                },
            },
        },
        "/deliveries/{deliveryId}": {
            "parameters": [did],
            "get": {
                "tags": ["deliveries"],
                "summary": "One delivery with every attempt",
                "responses": {
                    "200": {"description": "The delivery", **_json(one)},
                    **_errors(401, 403, 404),
                },
            },
        },
        "/deliveries/{deliveryId}/resend": {
            "parameters": [did],
            "post": {
                "tags": ["deliveries"],
                "summary": "Re-send a dead-lettered delivery (a new round of its retry policy)",
                "responses": {
                    "202": {"description": "Queued", **_json(one)},
                    **_errors(401, 403, 404, 409),
                },
            },
        },
    }


def _history_paths() -> dict[str, Any]:
    """Reading what happened: events, a vehicle's last known state, resources by id."""
    window = [
        _param("from", "query", type="string", format="date-time"),
        _param("to", "query", type="string", format="date-time"),
    ]
    vin_filter = _param("vin", "query", type="string", pattern="^[A-Za-z0-9_.:-]{1,64}$")
    monitor_filter = _param("monitorId", "query", type="string", pattern="^[A-Za-z0-9_.:-]{1,64}$")
    page = {"$ref": "#/components/schemas/Events"}
    about = (
        "Newest eventDate first. from and to bound the vehicle's eventDate (inclusive, "
        "RFC 3339 with a time zone). Only events of the fleets the token reaches are listed; "
        "events stored without a delivery say why in skipReason (a local monitor of the "
        "vehicle, a paused monitor...)."
    )

    def events(tag: str, summary: str, owner: dict[str, Any], *filters: Any) -> dict[str, Any]:
        return {
            "parameters": [owner],
            "get": {
                "tags": [tag],
                "summary": summary,
                "description": about,
                "parameters": [*_PAGING, *filters, *window],
                "responses": {
                    "200": {"description": "A page", **_json(page)},
                    **_errors(400, 401, 403, 404),
                },
            },
        }

    return {
        "/fleets/{fleetId}": {
            "parameters": [_param("fleetId")],
            "get": {
                "tags": ["fleets"],
                "summary": "A fleet: how many vehicles, and links to its collections",
                "responses": {
                    "200": {
                        "description": "The fleet",
                        **_json({"$ref": "#/components/schemas/Fleet"}),
                    },
                    **_errors(400, 401, 403),
                },
            },
        },
        "/fleets/{fleetId}/events": events(
            "events",
            "Events received from a fleet's vehicles",
            _param("fleetId"),
            vin_filter,
            monitor_filter,
        ),
        "/vehicles/{vin}": {
            "parameters": [_param("vin")],
            "get": {
                "tags": ["vehicles"],
                "summary": "A vehicle's last known state",
                "description": "Its last status message (retained on the broker: online, the "
                "agent's time, version, outbox depth), its last position and the last value of "
                f"each data name it sent, taken from its latest {RECENT_EVENTS} events.",
                "responses": {
                    "200": {
                        "description": "The vehicle",
                        **_json({"$ref": "#/components/schemas/VehicleState"}),
                    },
                    **_errors(400, 401, 403, 404),
                },
            },
        },
        "/vehicles/{vin}/events": events(
            "events", "Events received from one vehicle", _param("vin"), monitor_filter
        ),
        "/monitors/{monitorId}": {
            "parameters": [_param("monitorId")],
            "get": {
                "tags": ["monitors"],
                "summary": "A monitor by its id alone (fleet or vehicle)",
                "responses": {
                    "200": {
                        "description": "The monitor",
                        **_json({"$ref": "#/components/schemas/Monitor"}),
                    },
                    **_errors(401, 403, 404),
                },
            },
        },
        "/monitors/{monitorId}/events": events(
            "events", "Events received for one monitor", _param("monitorId"), vin_filter
        ),
    }


def _vehicle_paths() -> dict[str, Any]:
    fleet, vin = _param("fleetId"), _param("vin")
    one = {"$ref": "#/components/schemas/Vehicle"}
    return {
        "/fleets/{fleetId}/vehicles": {
            "parameters": [fleet],
            "get": {
                "tags": ["vehicles"],
                "summary": "The vehicles provisioned in a fleet",
                "parameters": _PAGING,
                "responses": {
                    "200": {
                        "description": "A page",
                        **_json({"$ref": "#/components/schemas/Vehicles"}),
                    },
                    **_errors(400, 401, 403),
                },
            },
        },
        "/fleets/{fleetId}/vehicles/{vin}": {
            "parameters": [fleet, vin],
            "put": {
                "tags": ["vehicles"],
                "summary": "Provision a vehicle in a fleet, or move it there (admin scope)",
                "description": "Events are routed by this record, never by the fleet a vehicle "
                "claims: to the monitors of this fleet and of the vehicle. An event of a vehicle "
                "that is not provisioned is counted and not delivered.",
                "responses": {
                    "201": {"description": "Provisioned", **_json(one)},
                    "200": {"description": "Already known; now in this fleet", **_json(one)},
                    **_errors(400, 401, 403),
                },
            },
            "delete": {
                "tags": ["vehicles"],
                "summary": "Remove a vehicle from a fleet (admin scope)",
                "responses": {"204": {"description": "Removed"}, **_errors(400, 401, 403, 404)},
            },
        },
    }


_HEALTH = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ok", "failing"]},
        "failing": {"type": "array", "items": {"type": "string"}},
        "parts": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
                "required": ["ok", "detail"],
            },
        },
    },
    "required": ["status", "failing", "parts"],
}


def _ops_paths() -> dict[str, Any]:
    return {
        "/healthz": {
            "get": {
                "tags": ["operations"],
                "security": [],
                "summary": "Health of each part this process runs",
                "description": "Parts: broker (the MQTT link of ingest and of the monitor "
                "channel), ingest (its commit worker), dispatcher, api (monitor channel and "
                "status sync), store (answers a query). Only the parts of this process's roles "
                "are listed, the store always. 200 when every part works, 503 when one fails: "
                "a load balancer takes the process out, a probe can restart it.",
                "responses": {
                    "200": {
                        "description": "Every part works",
                        **_json(_HEALTH, "application/json"),
                    },
                    "503": {
                        "description": "At least one part fails (listed in failing)",
                        **_json(_HEALTH, "application/json"),
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "tags": ["operations"],
                "security": [],
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Text exposition format",
                        **_json({"type": "string"}, "text/plain"),
                    }
                },
            }
        },
    }


_STAMP = {"type": ["string", "null"], "format": "date-time"}
_LINK = {"type": "object", "properties": {"href": {"type": "string"}}, "required": ["href"]}


RESEND_BATCH = 1000  # dead letters re-sent per call of .../dead-letters/resend

_RESENT = {
    "type": "object",
    "properties": {
        "monitorId": {"type": "string"},
        "resent": {"type": "integer", "minimum": 0},
        "remaining": {"type": "integer", "minimum": 0},
    },
    "required": ["monitorId", "resent", "remaining"],
}


def _schemas() -> dict[str, Any]:
    links = {"type": "object", "additionalProperties": _LINK}
    status = {"type": "string", "enum": list(MONITOR_STATUSES)}
    ref_props = {
        "monitorId": {"type": "string"},
        "status": status,
        "delivery": {
            "type": "string",
            "enum": list(DELIVERIES),
            "description": "pending: the definition is not yet on the broker (away, or not "
            "answered yet); it is pushed when the broker is back. pushed: the broker holds it "
            "(retained), and each vehicle gets it at its next connection; what each vehicle "
            "made of it is in vehicles[] (applied or rejected).",
        },
        "createdAt": _STAMP,
        "updatedAt": _STAMP,
        "_links": links,
    }
    problem = {
        "type": "object",
        "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
        "required": ["path", "message"],
    }
    attempt = {
        "type": "object",
        "properties": {
            "number": {"type": "integer"},
            "startedAt": _STAMP,
            "durationMs": {"type": "number"},
            "outcome": {"type": "string", "enum": list(ATTEMPT_OUTCOMES)},
            "statusCode": {"type": ["integer", "null"]},
            "error": {"type": "string"},
        },
    }

    def page(key: str, item: str) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "_links": links,
                "total": {"type": "integer"},
                "totalPage": {"type": "integer"},
                "currentPage": {"type": "integer"},
                "_embedded": {
                    "type": "object",
                    "properties": {
                        key: {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}}
                    },
                },
            },
            "required": ["_links", "total", "totalPage", "currentPage", "_embedded"],
        }

    return {
        "XError": {
            "type": "object",
            "properties": {
                "code": {"type": "integer"},
                "uuid": {"type": "string"},
                "message": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"},
                "problems": {"type": "array", "items": problem},
            },
            "required": ["code", "uuid", "message", "timestamp", "problems"],
        },
        "MonitorParameter": {
            "type": "object",
            "description": "Stellantis MonitorParameter; parse_monitor validates it fully. "
            "Attribute values are write-only: Header and Query values (unless the attribute "
            'says "secret": false) and Body values marked "secret": true are read back as '
            '"********"; a definition sent back with such a value keeps the stored one.',
            "properties": {
                "label": {"type": "string"},
                "subscribeParam": {"type": "object"},
                "extendedEventParam": {"type": "array", "items": {"type": "string"}},
                "triggerParam": {"type": "object"},
            },
            "required": ["label", "subscribeParam", "triggerParam"],
        },
        "MonitorStatusSetter": {
            "type": "object",
            "properties": {"status": {"type": "string", "enum": list(SETTABLE_STATUSES)}},
            "required": ["status"],
        },
        "MonitorRef": {"type": "object", "properties": ref_props, "required": list(ref_props)},
        "Monitor": {
            "type": "object",
            "properties": {
                **ref_props,
                "monitor": {"$ref": "#/components/schemas/MonitorParameter"},
                "vehicles": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "vin": {"type": "string"},
                            "state": {"type": "string", "enum": list(REPORTED_STATES)},
                            "reasons": {"type": "array", "items": problem},
                            "hash": {"type": "string"},
                            "at": {"type": "string"},
                            "obdRequestsPerMinute": {
                                "description": "What the monitor costs on this vehicle's OBD-II "
                                "buses, in requests per minute, as its agent reported with the "
                                "state (null: no OBD-II, or not reported since this backend "
                                "started).",
                                "type": ["number", "null"],
                                "minimum": 0,
                            },
                            "missingData": {
                                "description": "Data names the monitor reads that this "
                                "vehicle's capability manifest lacks: it never fires there "
                                "(null: no manifest known).",
                                "type": ["array", "null"],
                                "items": {"type": "string"},
                            },
                        },
                    },
                },
            },
            "required": [*ref_props, "monitor", "vehicles"],
        },
        "Monitors": page("monitors", "Monitor"),
        "Delivery": {
            "type": "object",
            "properties": {
                "deliveryId": {"type": "string"},
                "monitorId": {"type": "string"},
                "state": {"type": "string", "enum": list(DELIVERY_STATES)},
                "url": {"type": "string"},
                "eventIds": {"type": "array", "items": {"type": "string"}},
                "attemptCount": {"type": "integer"},
                "createdAt": _STAMP,
                "nextAttemptAt": _STAMP,
                "deliveredAt": _STAMP,
                "reason": {"type": "string"},
                "attempts": {"type": "array", "items": attempt},
                "_links": links,
            },
            "required": ["deliveryId", "monitorId", "state", "attempts", "_links"],
        },
        "Deliveries": page("deliveries", "Delivery"),
        "Resent": _RESENT,
        "Vehicle": {
            "type": "object",
            "properties": {
                "vin": {"type": "string"},
                "fleetId": {"type": "string"},
                "createdAt": _STAMP,
                "_links": links,
            },
            "required": ["vin", "fleetId", "createdAt", "_links"],
        },
        "Vehicles": page("vehicles", "Vehicle"),
        **_event_schemas(links),
        "Events": page("events", "Event"),
    }


def _schema(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _event_schemas(links: dict[str, Any]) -> dict[str, Any]:
    """The webhook body (Stellantis B2B MonitorEvents; docs/schemas/webhook.schema.json is the
    full JSON Schema) and what the API shows of stored events and vehicles."""
    text = {"type": "string"}
    nullable_stamp = {"type": ["string", "null"], "format": "date-time"}
    source = {"eventId": text, "eventDate": nullable_stamp}
    return {
        "EventValue": {
            "type": "object",
            "description": "The data behind the firing: a Stellantis data name or a DBC "
            "Message.Signal key, and its value ({type, body: {literalValue}}).",
            "properties": {"data": text, "value": {"type": "object"}},
            "required": ["data", "value"],
        },
        "Extension": {
            "type": "object",
            "description": "An extendedEventParam the monitor asked for (vehicle.position...).",
            "properties": {"type": text, "body": {"type": "object"}},
            "required": ["type", "body"],
        },
        "MonitorEvent": {
            "type": "object",
            "properties": {
                "fleetId": {"type": ["string", "null"]},
                "vin": text,
                "eventDate": {"type": "string", "format": "date-time"},
                "refresh": {"type": "boolean"},
                "values": {"type": "array", "items": _schema("EventValue")},
                "extensions": {"type": "array", "items": _schema("Extension")},
            },
            "required": ["vin", "eventDate", "values", "extensions", "refresh"],
        },
        "MonitorEvents": {
            "type": "object",
            "description": "The body POSTed to a monitor's callback.webhook.target. Without "
            "batchNotify, events has one item; with it, up to batchNotify.size. Receivers "
            "must ignore members they do not know.",
            "properties": {
                "monitorId": text,
                "attributes": {
                    "type": "array",
                    "description": "The monitor's Body attributes, variables substituted.",
                    "items": {
                        "type": "object",
                        "properties": {"key": text, "value": text},
                        "required": ["key", "value"],
                    },
                },
                "events": {"type": "array", "minItems": 1, "items": _schema("MonitorEvent")},
            },
            "required": ["monitorId", "attributes", "events"],
        },
        "Event": {
            "type": "object",
            "properties": {
                "eventId": text,
                "vin": text,
                "fleetId": {"type": ["string", "null"]},
                "monitorId": text,
                "eventDate": _STAMP,
                "receivedAt": _STAMP,
                "skipReason": {
                    "type": ["string", "null"],
                    "description": "Why it was stored without a delivery (null: delivered).",
                },
                "event": _schema("MonitorEvent"),
                "_links": links,
            },
            "required": ["eventId", "vin", "monitorId", "eventDate", "event", "_links"],
        },
        "VehicleState": {
            "type": "object",
            "properties": {
                "vin": text,
                "fleetId": text,
                "createdAt": _STAMP,
                "status": {
                    "type": ["object", "null"],
                    "description": "The last status the vehicle published (null: none yet).",
                    "properties": {
                        "online": {"type": "boolean"},
                        "at": text,
                        "version": text,
                        "outboxDepth": {"type": "integer"},
                        "clock": text,
                        "receivedAt": _STAMP,
                    },
                },
                "lastEventAt": nullable_stamp,
                "position": {
                    "type": ["object", "null"],
                    "properties": {"position": {"type": "object"}, **source},
                },
                "values": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"data": text, "value": {"type": "object"}, **source},
                    },
                },
                "_links": links,
            },
            "required": ["vin", "fleetId", "status", "position", "values", "_links"],
        },
        "Fleet": {
            "type": "object",
            "properties": {
                "fleetId": text,
                "vehicleCount": {"type": "integer"},
                "_links": links,
            },
            "required": ["fleetId", "vehicleCount", "_links"],
        },
    }


def _webhooks() -> dict[str, Any]:
    """OpenAPI 3.1 ``webhooks``: what the backend POSTs to each monitor's target."""
    header = {"required": True, "schema": {"type": "string"}}
    return {
        "monitorEvents": {
            "post": {
                "tags": ["webhooks"],
                "summary": "Events of a monitor, POSTed to its callback.webhook.target",
                "description": "Signed per Standard Webhooks with the fleet's secret: "
                "webhook-signature is v1,base64(HMAC-SHA256(secret, id.timestamp.body)). "
                "Header attributes of the monitor are added as headers. Answer 2xx once "
                "stored; anything else (or no answer) is retried by the monitor's retryPolicy, "
                "429/503 honour Retry-After, 410 Gone stops the monitor (Failed). The same "
                "webhook-id is sent again on a retry: de-duplicate on it.",
                "parameters": [
                    {"name": "webhook-id", "in": "header", **header},
                    {"name": "webhook-timestamp", "in": "header", **header},
                    {"name": "webhook-signature", "in": "header", **header},
                ],
                "requestBody": {
                    "required": True,
                    **_json(_schema("MonitorEvents"), "application/json"),
                },
                "responses": {
                    "200": {"description": "Received (any 2xx)"},
                    "410": {"description": "Gone: stop sending; the monitor becomes Failed"},
                    "500": {"description": "Not received: retried per the retry policy"},
                },
            }
        }
    }


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    paths.update(_monitor_paths("/fleets/{fleetId}", _param("fleetId"), "fleet monitors"))
    paths.update(_monitor_paths("/vehicles/{vin}", _param("vin"), "vehicle monitors"))
    paths.update(_delivery_paths())
    paths.update(_vehicle_paths())
    paths.update(_history_paths())
    paths.update(_ops_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edgemon backend: monitors and deliveries",
            "version": __version__,
            "description": "Stellantis-style monitors; events leave as signed webhooks. "
            "A token reaches the fleets it is bound to (every fleet with the admin scope); a "
            "vehicle is reached through the fleet it is provisioned in.",
        },
        "paths": paths,
        "webhooks": _webhooks(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
