"""Who may see what: bearer tokens bound to fleets, and attribute values that are write-only.

Pure. A token reaches the fleets listed in its configuration, or every fleet with the ``admin``
scope (which also provisions vehicles into fleets). A vehicle is reached through the fleet the
backend's records put it in. Tokens are compared in constant time (``hmac.compare_digest``),
every configured token each time, so the answer's timing tells nothing about which one nearly
matched.

Attribute values are write-only in the API's answers: Header and Query values are masked unless
the attribute says ``"secret": false``; Body values are masked when it says ``"secret": true``.
A definition sent back with a masked value keeps the stored value of the same (type, key).
"""

from __future__ import annotations

import copy
import hmac
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agent.errors import Problem
from backend.config import ApiToken

MASK = "********"
_SECRET_BY_DEFAULT = ("Header", "Query")
_ATTRIBUTE_HOLDERS = ("subscribeParam", "attributes", "attributres")


def find_token(tokens: Sequence[ApiToken], presented: str) -> ApiToken | None:
    """The configured token equal to ``presented``; every one is compared, in constant time."""
    given = presented.encode("utf-8", "surrogateescape")
    found = None
    for token in tokens:
        if hmac.compare_digest(token.token.encode("utf-8", "surrogateescape"), given):
            found = token
    return found


def reaches_fleet(token: ApiToken, fleet_id: str | None) -> bool:
    return token.admin or (fleet_id is not None and fleet_id in token.fleets)


def reaches_owner(
    token: ApiToken, scope: str, owner: str, fleet_of: Callable[[str], str | None]
) -> bool:
    """Whether ``token`` reaches a fleet (scope ``fleet``) or a vehicle (through its fleet)."""
    if token.admin:
        return True
    return reaches_fleet(token, owner if scope == "fleet" else fleet_of(owner))


# -- write-only attribute values ----------------------------------------------------------------


def _attributes(node: Any) -> Iterator[dict[str, Any]]:
    """Every ``{type, key, value}`` object under ``node``."""
    if isinstance(node, dict):
        if isinstance(node.get("type"), str) and "key" in node and "value" in node:
            yield node
            return
        for value in node.values():
            yield from _attributes(value)
    elif isinstance(node, list):
        for item in node:
            yield from _attributes(item)


def _holders(definition: dict[str, Any]) -> Iterator[Any]:
    inner = definition.get("monitor")
    for obj in (definition, inner if isinstance(inner, dict) else {}):
        for key in _ATTRIBUTE_HOLDERS:
            if key in obj:
                yield obj[key]


def is_secret(attribute: dict[str, Any]) -> bool:
    marked = attribute.get("secret")
    if isinstance(marked, bool):
        return marked
    return attribute.get("type") in _SECRET_BY_DEFAULT


def masked(definition: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored definition with every secret attribute value replaced by ``MASK``."""
    shown = copy.deepcopy(definition)
    for holder in _holders(shown):
        for attribute in _attributes(holder):
            if is_secret(attribute):
                attribute["value"] = MASK
    return shown


def keep_masked(new: dict[str, Any], stored: dict[str, Any]) -> list[Problem]:
    """Put back, in place, the stored value of each attribute sent as ``MASK`` (same type and
    key); a masked value with nothing stored to keep is a problem."""
    kept = {
        (a.get("type"), a.get("key")): a.get("value")
        for holder in _holders(stored)
        for a in _attributes(holder)
    }
    problems = []
    for holder in _holders(new):
        for attribute in _attributes(holder):
            if attribute.get("value") != MASK:
                continue
            value = kept.get((attribute.get("type"), attribute.get("key")))
            if isinstance(value, str):
                attribute["value"] = value
            else:
                key = attribute.get("key")
                message = f"attribute {key!r} is sent masked but has no stored value to keep"
                problems.append(Problem("$", message))
    return problems


def masked_url(url: str) -> str:
    """A delivery URL as the API shows it: query values may carry Query attributes; masked."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = [(k, MASK) for k, _ in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(pairs, safe="*")))
