"""boolExp: parser, precedence, errors, three-valued evaluation, constant detection."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.monitors.expr import (
    And,
    Expr,
    ExprError,
    Name,
    Not,
    Or,
    Truth,
    compile_expression,
    constant_value,
    evaluate,
    names_of,
    parse_expression,
    to_text,
)


def test_precedence_not_over_and_over_or() -> None:
    parsed = parse_expression("a | b & !c")
    assert parsed.expr == Or((Name("a"), And((Name("b"), Not(Name("c"))))))
    assert parse_expression("!a & b").expr == And((Not(Name("a")), Name("b")))
    assert parse_expression("(a | b) & c").expr == And((Or((Name("a"), Name("b"))), Name("c")))


def test_names_may_hold_dots_dashes_digits() -> None:
    assert names_of(parse_expression("zone.1 & data_2 | t-3").expr) == {"zone.1", "data_2", "t-3"}


def test_missing_closing_parentheses_at_the_end_are_added() -> None:
    parsed = parse_expression("((a & (b | c)")
    assert parsed.closed_parens == 2
    assert parsed.expr == And((Name("a"), Or((Name("b"), Name("c")))))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("", 1),
        ("a &", 4),
        ("a b", 3),
        ("a & )", 5),
        ("(a))", 4),
        ("a + b", 3),
        ("& a", 1),
        ("()", 2),
    ],
)
def test_malformed_expressions_say_where(text: str, where: int) -> None:
    with pytest.raises(ExprError) as info:
        parse_expression(text)
    assert info.value.position + 1 == where


def test_kleene_three_valued_logic() -> None:
    expr = parse_expression("a & b | !c").expr
    assert evaluate(expr, {"a": True, "b": None, "c": True}) is None
    assert evaluate(expr, {"a": False, "b": None, "c": True}) is False
    assert evaluate(expr, {"a": None, "b": None, "c": False}) is True
    assert evaluate(expr, {}) is None


def test_constant_expressions_are_detected() -> None:
    assert constant_value(parse_expression("a | !a").expr) is True
    assert constant_value(parse_expression("a & !a").expr) is False
    assert constant_value(parse_expression("(a | b) & !(a | b)").expr) is False
    assert constant_value(parse_expression("a & b | !a").expr) is None


# -- property: parser + evaluator against a brute-force reference ------------------------------

NAMES = ["a", "b", "c", "d", "e"]


def trees() -> st.SearchStrategy[Expr]:
    leaves = st.sampled_from(NAMES).map(Name)
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            inner.map(Not),
            st.lists(inner, min_size=2, max_size=3).map(lambda ops: And(tuple(ops))),
            st.lists(inner, min_size=2, max_size=3).map(lambda ops: Or(tuple(ops))),
        ),
        max_leaves=12,
    )


_RANK = {False: 0, None: 1, True: 2}
_BY_RANK = {0: False, 1: None, 2: True}


def reference(expr: Expr, values: dict[str, Truth]) -> Truth:
    """Kleene logic as min/max over False < unknown < True; negation mirrors the order."""
    if isinstance(expr, Name):
        return values[expr.name]
    if isinstance(expr, Not):
        return _BY_RANK[2 - _RANK[reference(expr.operand, values)]]
    ranks = [_RANK[reference(op, values)] for op in expr.operands]
    return _BY_RANK[min(ranks) if isinstance(expr, And) else max(ranks)]


def loose_text(expr: Expr) -> str:
    """Text with the fewest parentheses the precedence allows (so precedence is exercised)."""
    if isinstance(expr, Name):
        return expr.name
    if isinstance(expr, Not):
        inner = loose_text(expr.operand)
        return f"!{inner}" if isinstance(expr.operand, Name | Not) else f"!({inner})"
    if isinstance(expr, And):
        return " & ".join(
            f"({loose_text(op)})" if isinstance(op, Or | And) else loose_text(op)
            for op in expr.operands
        )
    return " | ".join(
        f"({loose_text(op)})" if isinstance(op, Or) else loose_text(op) for op in expr.operands
    )


@settings(max_examples=200, deadline=None)
@given(trees())
def test_parsed_text_evaluates_like_the_tree_on_every_assignment(tree: Expr) -> None:
    for text in (to_text(tree), loose_text(tree)):
        parsed = parse_expression(text).expr
        compiled = compile_expression(parsed)
        for bits in itertools.product((False, None, True), repeat=len(NAMES)):
            values = dict(zip(NAMES, bits, strict=True))
            expected = reference(tree, values)
            assert evaluate(parsed, values) == expected, text
            assert compiled(values) == expected, text


@settings(max_examples=200, deadline=None)
@given(trees())
def test_constant_check_matches_the_truth_table(tree: Expr) -> None:
    used = sorted(names_of(tree))
    outcomes = {
        reference(tree, dict(zip(used, bits, strict=True)))
        for bits in itertools.product((False, True), repeat=len(used))
    }
    expected = outcomes.pop() if len(outcomes) == 1 else None
    assert constant_value(tree) == expected
