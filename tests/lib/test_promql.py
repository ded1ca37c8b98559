"""PromQL rendering: label values only ever as quoted literals."""

from __future__ import annotations

import pytest

from poolboard.lib import promql


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", '"plain"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("a\nb", '"a\\nb"'),
        ("tab\there", '"tab\\there"'),
        ("\x01", '"\\x01"'),
        ("héllo ✓", '"héllo ✓"'),
        ('x"} or vector(1) #', '"x\\"} or vector(1) #"'),
    ],
)
def test_quote_escapes_what_go_strings_need(value: str, quoted: str) -> None:
    assert promql.quote(value) == quoted


def test_matchers_quote_values_and_check_names() -> None:
    assert promql.matchers({"job": 'a"b'}) == 'job="a\\"b"'
    assert promql.matchers(one_of={"pool": ["a.b", "a|b"]}) == 'pool=~"a\\\\.b|a\\\\|b"'
    with pytest.raises(promql.PromQLError, match="not a valid Prometheus label name"):
        promql.matchers({'job"}': "x"})


def test_render_fills_placeholders_only_in_the_template() -> None:
    text = promql.render(
        'sum by ($by) (rate(x{state="used",$sel}[$w]))', by=["job", "pool"], sel=promql.matchers({"job": "$w $by"}), window="2m"
    )
    assert text == 'sum by (job, pool) (rate(x{state="used",job="$w $by"}[2m]))'
    assert promql.render("x{a=\"b\",$sel}", by=[], sel="") == 'x{a="b"}'


def test_render_refuses_unknown_placeholders_and_bad_windows() -> None:
    with pytest.raises(promql.PromQLError, match=r"unknown placeholder \$selector"):
        promql.render("x{$selector}", by=["job"])
    with pytest.raises(promql.PromQLError, match="not a PromQL duration"):
        promql.render("rate(x[$w])", by=["job"], window="5 minutes")
    # label_replace back-references are not placeholders
    assert promql.render('label_replace(x, "a", "$1", "b", "(.*)")', by=[]) == 'label_replace(x, "a", "$1", "b", "(.*)")'
