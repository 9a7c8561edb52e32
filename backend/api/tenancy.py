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


def fleets_reached(token: ApiToken) -> tuple[str, ...] | None:
    """The fleets whose events and vehicles ``token`` may read; None: every fleet (admin)."""
    return None if token.admin else tuple(sorted(token.fleets))


def reaches_owner(
    token: ApiToken, scope: str, owner: str, fleet_of: Callable[[str], str | None]
) -> bool:
    """Whether ``token`` reaches a fleet (scope ``fleet``) or a vehicle (through its fleet)."""
    if token.admin:
        return True
    return reaches_fleet(token, owner if scope == "fleet" else fleet_of(owner))


# -- write-only attribute values ----------------------------------------------------------------


_LIST_KEYS = ("attributes", "attributres")  # the docs' spelling too (reference §7)


def _attribute_lists(definition: dict[str, Any]) -> Iterator[tuple[str, list[Any]]]:
    """Every list of ``{type, key, value}`` a definition can hold, with its JSON path: the
    monitor's, the webhook's (with or without the ``webhook`` wrapper) and ``callbackAttributes``.
    Known places only, no recursion: a body nested deep costs nothing here."""
    inner = definition.get("monitor")
    roots = [("$", definition)]
    if isinstance(inner, dict) and "triggerParam" not in definition:
        roots.append(("$.monitor", inner))
    for root_path, root in roots:
        places: list[tuple[str, Any]] = [(root_path, root)]
        subscribe = _child(root, "subscribeParam")
        callback = _child(subscribe, "callback")
        places.append((f"{root_path}.subscribeParam.callback", callback))
        places.append((f"{root_path}.subscribeParam.callback.webhook", _child(callback, "webhook")))
        for place_path, place in places:
            for key in _LIST_KEYS:
                found = place.get(key)
                if isinstance(found, list):
                    yield f"{place_path}.{key}", found
        channels = _child(subscribe, "callbackAttributes")
        for channel, found in channels.items():
            if isinstance(found, list):
                yield f"{root_path}.subscribeParam.callbackAttributes.{channel}", found


def _child(obj: dict[str, Any], key: str) -> dict[str, Any]:
    found = obj.get(key)
    return found if isinstance(found, dict) else {}


def _attributes(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, items in _attribute_lists(definition):
        for index, item in enumerate(items):
            if isinstance(item, dict) and isinstance(item.get("value"), str):
                yield f"{path}[{index}]", item


def is_secret(attribute: dict[str, Any]) -> bool:
    marked = attribute.get("secret")
    if isinstance(marked, bool):
        return marked
    return attribute.get("type") in _SECRET_BY_DEFAULT


def masked(definition: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored definition with every secret attribute value replaced by ``MASK``."""
    shown = copy.deepcopy(definition)
    for _path, attribute in _attributes(shown):
        if is_secret(attribute):
            attribute["value"] = MASK
    return shown


def keep_masked(new: dict[str, Any], stored: dict[str, Any]) -> list[Problem]:
    """Put back, in place, the stored value of each attribute sent as ``MASK``: the one at the
    same place with the same type and key, else the only stored one with that type and key. A
    masked value with nothing (or nothing unambiguous) to keep is a problem."""
    by_place = {path: a for path, a in _attributes(stored)}
    by_name: dict[tuple[Any, Any], list[str]] = {}
    for attribute in by_place.values():
        by_name.setdefault((attribute.get("type"), attribute.get("key")), []).append(
            attribute["value"]
        )
    problems = []
    for path, attribute in _attributes(new):
        if attribute["value"] != MASK:
            continue
        name = (attribute.get("type"), attribute.get("key"))
        same = by_place.get(path)
        if same is not None and (same.get("type"), same.get("key")) == name:
            attribute["value"] = same["value"]
        elif len(by_name.get(name, [])) == 1:
            attribute["value"] = by_name[name][0]
        else:
            message = "sent masked, but no single stored value of this type and key to keep"
            problems.append(Problem(f"{path}.value", message))
    return problems


def masked_url(url: str) -> str:
    """A delivery URL as the API shows it: query values may carry Query attributes; masked."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = [(k, MASK) for k, _ in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(pairs, safe="*")))
