from __future__ import annotations

import pytest

from poolboard.lib.attribution import Attributor, Rule, is_own, parse_cidr


def test_default_rule_is_application_name_equals_service():
    attr = Attributor([], ["billing", "search"])
    assert attr("billing", "app", "10.0.0.1") == "billing"
    assert attr("unknown", "app", "10.0.0.1") is None
    assert attr(None, None, None) is None


def test_own_sessions_are_left_out_even_if_a_rule_matches():
    attr = Attributor([Rule("billing", application_name="*")], ["billing"])
    assert is_own("poolboard-monitor")
    assert attr("poolboard-monitor", "root", None) is None
    assert attr("poolboard-web", "root", None) is None
    assert attr("psql", "root", None) == "billing"


def test_rules_apply_in_order_first_match_wins():
    rules = [
        Rule("reports", application_name="billing-report*"),
        Rule("billing", application_name="billing-*"),
        Rule("etl", usename="etl_user"),
        Rule("legacy", client_addr="10.1.0.0/16"),
    ]
    attr = Attributor(rules, ["billing", "reports", "etl", "legacy", "psql"])
    assert attr("billing-reporter", "u", None) == "reports"
    assert attr("billing-api", "u", None) == "billing"
    assert attr("psql", "etl_user", None) == "etl"  # rule beats the default
    assert attr("", "x", "10.1.2.3") == "legacy"
    assert attr("", "x", "10.2.0.1") is None
    assert attr("", "x", None) is None  # Unix socket: no address


def test_all_criteria_of_a_rule_must_match():
    attr = Attributor([Rule("svc", application_name="app", usename="u", client_addr="192.168.0.0/24")], [])
    assert attr("app", "u", "192.168.0.9") == "svc"
    assert attr("app", "v", "192.168.0.9") is None
    assert attr("app", "u", "192.168.1.9") is None


def test_ipv6_and_bad_cidr():
    attr = Attributor([Rule("v6", client_addr="fd00::/8")], [])
    assert attr("", "", "fd00::1") == "v6"
    assert attr("", "", "10.0.0.1") is None
    assert attr("", "", "not-an-ip") is None
    with pytest.raises(ValueError, match="not an IP network"):
        parse_cidr("10.0.0.0/99")
    with pytest.raises(ValueError, match="not an IP network: 'bogus'"):
        Rule("x", client_addr="bogus")
    with pytest.raises(ValueError, match="a rule needs at least one of"):
        Rule("x")


def test_glob_is_case_sensitive_and_anchored():
    attr = Attributor([Rule("a", application_name="api")], [])
    assert attr("api", "", None) == "a"
    assert attr("api-2", "", None) is None
    assert attr("API", "", None) is None
