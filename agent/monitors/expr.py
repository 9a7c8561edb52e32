"""``boolExp``: a real parser (no ``eval``) and a three-valued evaluator.

Grammar (reference §1.4; precedence, which Stellantis leaves open, is ``!`` over ``&`` over ``|``)::

    or   := and ('|' and)*
    and  := not ('&' not)*
    not  := '!' not | atom
    atom := NAME | '(' or ')'

NAME is a trigger name: a run of letters, digits, ``.``, ``_`` and ``-``. Missing closing
parentheses at the very end (the published examples have them, reference §7.6) are added and
reported back as a count, so the caller can warn. Anything else malformed raises ``ExprError``.

Bounds (issue 12, finding 6): a text longer than ``max_length`` is refused before it is
tokenised, and nesting (parentheses and ``!``) deeper than ``max_depth`` is refused while
parsing, so the recursive descent (and every recursive walk of the tree) stays far from Python's
recursion limit. ``constant_value`` evaluates every assignment at once, one bitmask per name.

Evaluation is Kleene's three-valued logic: ``True``, ``False`` or ``None`` (unknown).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Truth = bool | None

MAX_LENGTH = 1024  # characters; the defaults of ``parse_expression``
MAX_DEPTH = 32  # parentheses and '!' nested
MAX_NAMES = 16  # distinct names ``constant_value`` accepts: 2^16 assignments, as bits

_TOKEN = re.compile(r"\s*(?:([A-Za-z0-9_.\-]+)|([&|!()])|(\S))")


class ExprError(ValueError):
    """A malformed expression; ``position`` is the 0-based character offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at character {position + 1}")
        self.position = position


@dataclass(frozen=True, slots=True)
class Name:
    name: str


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Expr, ...]


Expr = Name | Not | And | Or


@dataclass(frozen=True, slots=True)
class Parsed:
    expr: Expr
    closed_parens: int  # closing parentheses added at the end


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) with kind "name" or "op"; raises on a stray character."""
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:  # only trailing whitespace is left
            break
        if match.group(1):
            out.append(("name", match.group(1), match.start(1)))
        elif match.group(2):
            out.append(("op", match.group(2), match.start(2)))
        elif match.group(3):
            raise ExprError(f"unexpected character {match.group(3)!r}", match.start(3))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str, max_depth: int) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0
        self.closed = 0
        self.depth = 0
        self.max_depth = max_depth

    def enter(self, position: int) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise ExprError(f"nested more than {self.max_depth} levels deep", position)

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take_op(self, op: str) -> bool:
        token = self.peek()
        if token is not None and token == ("op", op, token[2]):
            self.index += 1
            return True
        return False

    def parse(self) -> Parsed:
        if not self.tokens:
            raise ExprError("empty expression", 0)
        expr = self.parse_or()
        token = self.peek()
        if token is not None:
            what = "unbalanced ')'" if token[1] == ")" else f"unexpected {token[1]!r}"
            raise ExprError(what, token[2])
        return Parsed(expr, self.closed)

    def parse_or(self) -> Expr:
        operands = [self.parse_and()]
        while self.take_op("|"):
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def parse_and(self) -> Expr:
        operands = [self.parse_not()]
        while self.take_op("&"):
            operands.append(self.parse_not())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_not(self) -> Expr:
        nots = 0
        while (token := self.peek()) is not None and self.take_op("!"):
            nots += 1
            self.enter(token[2])
        expr = self.parse_atom()
        self.depth -= nots
        for _ in range(nots):
            expr = Not(expr)
        return expr

    def parse_atom(self) -> Expr:
        token = self.peek()
        if token is None:
            raise ExprError("expression ends where a trigger name is expected", len(self.text))
        kind, text, position = token
        if kind == "name":
            self.index += 1
            return Name(text)
        if text != "(":
            raise ExprError(f"expected a trigger name or '(', got {text!r}", position)
        self.index += 1
        self.enter(position)
        inner = self.parse_or()
        self.depth -= 1
        if self.take_op(")"):
            return inner
        if self.peek() is None:  # missing ')' at the very end: tolerated (reference §7.6)
            self.closed += 1
            return inner
        bad = self.peek()
        assert bad is not None
        raise ExprError(f"expected ')', got {bad[1]!r}", bad[2])


def parse_expression(
    text: str, *, max_length: int = MAX_LENGTH, max_depth: int = MAX_DEPTH
) -> Parsed:
    """Parse a boolExp; raises ``ExprError`` (also when it passes a bound)."""
    if len(text) > max_length:
        raise ExprError(f"is {len(text)} characters long, more than {max_length}", max_length)
    return _Parser(text, max_depth).parse()


def names_of(expr: Expr) -> set[str]:
    if isinstance(expr, Name):
        return {expr.name}
    if isinstance(expr, Not):
        return names_of(expr.operand)
    out: set[str] = set()
    for operand in expr.operands:
        out |= names_of(operand)
    return out


def evaluate(expr: Expr, values: Mapping[str, Truth] | Callable[[str], Truth]) -> Truth:
    """Three-valued (Kleene) value of ``expr``; a name missing from ``values`` is unknown."""
    lookup = values if callable(values) else values.get
    return _eval(expr, lookup)


def _eval(expr: Expr, lookup: Callable[[str], Truth]) -> Truth:
    if isinstance(expr, Name):
        return lookup(expr.name)
    if isinstance(expr, Not):
        inner = _eval(expr.operand, lookup)
        return None if inner is None else not inner
    if isinstance(expr, And):
        result: Truth = True
        for operand in expr.operands:
            value = _eval(operand, lookup)
            if value is False:
                return False
            if value is None:
                result = None
        return result
    result = False
    for operand in expr.operands:
        value = _eval(operand, lookup)
        if value is True:
            return True
        if value is None:
            result = None
    return result


def compile_expression(expr: Expr) -> Callable[[Mapping[str, Truth]], Truth]:
    """``evaluate`` as a closure tree built once: the engine calls it on every decision."""
    if isinstance(expr, Name):
        name = expr.name
        return lambda values: values.get(name)
    if isinstance(expr, Not):
        inner = compile_expression(expr.operand)

        def negate(values: Mapping[str, Truth]) -> Truth:
            value = inner(values)
            return None if value is None else not value

        return negate
    parts = tuple(compile_expression(op) for op in expr.operands)
    stop, keep = (False, True) if isinstance(expr, And) else (True, False)

    def combine(values: Mapping[str, Truth]) -> Truth:
        result: Truth = keep
        for part in parts:
            value = part(values)
            if value is stop:
                return stop
            if value is None:
                result = None
        return result

    return combine


def constant_value(expr: Expr) -> bool | None:
    """True or False when every assignment of the triggers gives that value; else None.

    Bit ``j`` of a name's mask is its value in assignment ``j``, so one walk of the tree computes
    the whole truth table with integer operations. Raises ``ValueError`` above ``MAX_NAMES``
    names: callers bound the trigger count first.
    """
    names = sorted(names_of(expr))
    if len(names) > MAX_NAMES:
        raise ValueError(f"{len(names)} names, more than {MAX_NAMES}")
    size = 1 << len(names)
    full = (1 << size) - 1
    masks = {name: _column(index, size) for index, name in enumerate(names)}
    table = _truth_table(expr, masks, full)
    if table == full:
        return True
    return False if table == 0 else None


def _column(index: int, size: int) -> int:
    """The mask of name ``index``: set in every assignment ``j`` whose bit ``index`` is set."""
    block = (1 << (1 << index)) - 1  # 2^index ones
    period = 1 << (index + 1)
    mask = 0
    for start in range(1 << index, size, period):
        mask |= block << start
    return mask


def _truth_table(expr: Expr, masks: Mapping[str, int], full: int) -> int:
    if isinstance(expr, Name):
        return masks[expr.name]
    if isinstance(expr, Not):
        return full & ~_truth_table(expr.operand, masks, full)
    parts = [_truth_table(operand, masks, full) for operand in expr.operands]
    result = full if isinstance(expr, And) else 0
    for part in parts:
        result = result & part if isinstance(expr, And) else result | part
    return result


def to_text(expr: Expr) -> str:
    """Canonical text with explicit parentheses around every compound operand."""
    if isinstance(expr, Name):
        return expr.name
    if isinstance(expr, Not):
        inner = to_text(expr.operand)
        return f"!{inner}" if isinstance(expr.operand, Name | Not) else f"!({inner})"
    joiner = " & " if isinstance(expr, And) else " | "
    parts = [
        to_text(op) if isinstance(op, Name | Not) else f"({to_text(op)})" for op in expr.operands
    ]
    return joiner.join(parts)
