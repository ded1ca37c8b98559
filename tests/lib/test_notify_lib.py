"""Pure parts of notification delivery: matchers, the address policy, Alertmanager grouping, backoff."""

from __future__ import annotations

import pytest

from poolboard.lib import alertgroups, matchers, urlpolicy
from poolboard.lib.alertgroups import Row


@pytest.mark.parametrize(("text", "labels", "expected"), [
    ('service="billing"', {"service": "billing"}, True),
    ('service="billing"', {"service": "billing-2"}, False),
    ("service!=billing", {"service": "search"}, True),
    ("service!=billing", {}, True),
    ('service=~"bill.*"', {"service": "billing"}, True),
    ('service=~"bill"', {"service": "billing"}, False),  # anchored, as in Alertmanager
    ('service!~"bill.*"', {"service": "billing"}, False),
    ('team=""', {"service": "x"}, True),  # a missing label is the empty string
])
def test_it_matches_as_alertmanager(text, labels, expected):
    assert matchers.matches([matchers.parse(text)], labels) is expected


def test_an_empty_matcher_list_silences_nothing_and_bad_matchers_say_why():
    assert matchers.matches([], {"a": "b"}) is False
    with pytest.raises(matchers.MatcherError, match="expected name=value"):
        matchers.parse("service billing")
    with pytest.raises(matchers.MatcherError, match="not a valid regex"):
        matchers.parse("service=~(")
    assert matchers.format_matcher(matchers.parse('a!~"x.*"')) == 'a!~"x.*"'


@pytest.mark.parametrize(("address", "reason"), [
    ("169.254.169.254", "169.254.169.254 is a cloud metadata address"),
    ("100.100.100.200", "100.100.100.200 is a cloud metadata address"),
    ("fd00:ec2::254", "fd00:ec2::254 is a cloud metadata address"),
    ("169.254.10.1", "169.254.10.1 is link-local"),
    ("fe80::1", "fe80::1 is link-local"),
    ("::ffff:169.254.169.254", "169.254.169.254 is a cloud metadata address"),
    ("127.0.0.1", "127.0.0.1 is loopback"),
    ("::1", "::1 is loopback"),
    ("10.0.0.5", "10.0.0.5 is a private address"),
    ("192.168.1.1", "192.168.1.1 is a private address"),
    ("100.64.0.1", "100.64.0.1 is a private address"),
    ("0.0.0.0", "0.0.0.0 is not a unicast address"),
    ("93.184.215.14", None),
    ("2606:4700::1111", None),
])
def test_it_refuses_internal_and_metadata_addresses(address, reason):
    assert urlpolicy.why_refused(address, []) == reason


def test_an_allow_list_lets_a_network_through_and_rejects_a_bad_entry():
    allowed = urlpolicy.parse_networks(["127.0.0.1", "10.0.0.0/8"])
    assert urlpolicy.why_refused("127.0.0.1", allowed) is None
    assert urlpolicy.why_refused("10.9.9.9", allowed) is None
    assert urlpolicy.why_refused("127.0.0.2", allowed) == "127.0.0.2 is loopback"
    with pytest.raises(ValueError, match="'10.0.0.0/33' is not an IP address or network"):
        urlpolicy.parse_networks(["10.0.0.0/33"])


def test_a_host_with_one_bad_address_is_refused():
    with pytest.raises(urlpolicy.AddressRefused, match="hooks.example: 169.254.169.254 is a cloud metadata address"):
        urlpolicy.check_addresses("hooks.example", ["93.184.215.14", "169.254.169.254"], [])


def test_group_keys_are_stable_and_quote_values():
    assert alertgroups.group_key({"service": 'a"b', "alertname": "X"}) == '{}:{alertname="X",service="a\\"b"}'


def test_a_batch_key_is_the_alerts_own_key_or_a_hash_of_its_members_in_any_order():
    assert alertgroups.batch_key(["f:1"]) == "f:1"
    assert alertgroups.batch_key(["a:1", "b:2"]) == alertgroups.batch_key(["b:2", "a:1"])
    assert alertgroups.batch_key(["a:1", "b:2"]) != alertgroups.batch_key(["a:1", "b:3"])


def test_reduce_group_keeps_the_newest_transition_and_drops_what_the_receiver_need_not_hear():
    rows = [Row(1, "a", "firing"), Row(2, "a", "resolved"), Row(3, "b", "resolved"), Row(4, "c", "firing"), Row(5, "d", "resolved")]
    decision = alertgroups.reduce_group(rows, heard_firing={"b", "d"}, send_resolved=True)
    assert decision.send == [3, 4, 5]
    assert decision.drop == {1: "superseded by a newer transition of the same alert", 2: "resolved before its firing was notified"}
    quiet = alertgroups.reduce_group(rows, heard_firing={"b", "d"}, send_resolved=False)
    assert quiet.send == [4]


def test_backoff_doubles_up_to_its_cap():
    assert [alertgroups.backoff_s(n, cap=10) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
