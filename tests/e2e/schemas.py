"""Load the published JSON Schemas (docs/schemas) and validate messages against them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
KINDS = ("event", "status", "monitor-state", "webhook", "monitor")


def schema(kind: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    return loaded


def validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(schema(kind), format_checker=FormatChecker())


def errors(kind: str, message: object) -> list[str]:
    """Every violation of ``kind``'s schema, as readable lines (empty = valid)."""
    found = validator(kind).iter_errors(message)
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in found]
