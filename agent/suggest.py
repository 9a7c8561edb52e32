"""Did-you-mean: the nearest valid names for a misspelt one, for every error that names a
choice (operators, data and signal names, days, configuration and monitor keys).

One helper so every message reads the same: ``unknown operator 'greaterThen' (did you mean
'greaterThan'?)``. Pure; ``difflib`` ranks by similarity, case-insensitively.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# How alike a name must be to be suggested (difflib ratio, 0..1). Above difflib's 0.6: data
# names share a long "vehicle." prefix, which alone made "vehicle.autonomy" look like
# "vehicle.odometer" (0.69); one or two typos stay well above (greaterThen 0.91, oil.tmp 0.97).
CUTOFF = 0.75
NEAR_BEST = 0.1  # a second suggestion must be about as near as the first
# Longer words get no suggestion: no valid name is that long, and a hostile monitor's keys
# (the backend reads them too) must not buy quadratic comparisons.
MAX_WORD = 128


def close_names(word: str, choices: Iterable[str], limit: int = 3) -> list[str]:
    """Up to ``limit`` valid names nearest ``word``, best first (case ignored in the ranking)."""
    if len(word) > MAX_WORD:
        return []
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(choice.lower(), choice)
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=limit, cutoff=CUTOFF)
    if not found:
        return []
    # only the names about as near as the best: one clear match is not diluted by far ones
    best = _ratio(word, found[0])
    return [by_lower[f] for f in found if _ratio(word, f) >= best - NEAR_BEST]


def _ratio(word: str, choice: str) -> float:
    return difflib.SequenceMatcher(None, word.lower(), choice).ratio()


def did_you_mean(word: str, choices: Iterable[str], limit: int = 3) -> str:
    """`` (did you mean 'a' or 'b'?)`` to append to an error, or ``""`` when nothing is near."""
    found = close_names(word, choices, limit)
    if not found:
        return ""
    quoted = [repr(f) for f in found]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f" (did you mean {listed}?)"
