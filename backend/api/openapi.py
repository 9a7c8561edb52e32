"""The OpenAPI 3.1 document of the monitor API, written by hand (served at ``/openapi.json``).

The ``MonitorParameter`` schema is deliberately open (``type: object`` with the required keys):
its full validation lives in ``agent.monitors.model.parse_monitor``, and a 400 lists every
problem it finds.
"""

from __future__ import annotations

from typing import Any

from agent import __version__
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


def _ops_paths() -> dict[str, Any]:
    return {
        "/healthz": {
            "get": {
                "tags": ["operations"],
                "security": [],
                "summary": "Liveness (the store answers, every worker runs)",
                "responses": {
                    "200": {
                        "description": "OK",
                        **_json(
                            {"type": "object", "properties": {"status": {"type": "string"}}},
                            "application/json",
                        ),
                    },
                    "503": {
                        "description": "A part has died (listed): restart the process",
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "status": {"type": "string"},
                                    "failing": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                            "application/json",
                        ),
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
            },
            "required": ["deliveryId", "monitorId", "state", "attempts"],
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
    }


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    paths.update(_monitor_paths("/fleets/{fleetId}", _param("fleetId"), "fleet monitors"))
    paths.update(_monitor_paths("/vehicles/{vin}", _param("vin"), "vehicle monitors"))
    paths.update(_delivery_paths())
    paths.update(_vehicle_paths())
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
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
