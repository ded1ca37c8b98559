"""Alertmanager label matchers: parse `name=value`, `name!=value`, `name=~regex`, `name!~regex`, and match.

A matcher is stored as Alertmanager's API spells it, {"name", "value", "isRegex", "isEqual"},
so a silence exported from Alertmanager reads the same here. As in Alertmanager, a regex
matches the whole value (it is anchored) and a missing label counts as the empty string.
"""

from __future__ import annotations

import re

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Longest operators first, so "=~" is not read as "=" followed by "~value".
OPERATORS = {"=~": (True, True), "!~": (True, False), "!=": (False, False), "=": (False, True)}


class MatcherError(ValueError):
    pass


def parse(text: str) -> dict:
    """`service=~"bill.*"` -> {"name": "service", "value": "bill.*", "isRegex": True, "isEqual": True}."""
    text = text.strip()
    for position, char in enumerate(text):
        if char in "=!":
            name, rest = text[:position].strip(), text[position:]
            break
    else:
        raise MatcherError(f"{text!r}: expected name=value, name!=value, name=~regex or name!~regex")
    operator = next((op for op in OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise MatcherError(f"{text!r}: expected =, !=, =~ or !~ after the label name")
    is_regex, is_equal = OPERATORS[operator]
    value = rest[len(operator):].strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    matcher = {"name": name, "value": value, "isRegex": is_regex, "isEqual": is_equal}
    validate(matcher)
    return matcher


def validate(matcher: dict) -> None:
    if not isinstance(matcher, dict) or set(matcher) != {"name", "value", "isRegex", "isEqual"}:
        raise MatcherError(f"{matcher!r}: a matcher has exactly name, value, isRegex and isEqual")
    if not isinstance(matcher["name"], str) or not NAME_RE.match(matcher["name"]):
        raise MatcherError(f"{matcher['name']!r} is not a label name (letters, digits and _, not starting with a digit)")
    if not isinstance(matcher["value"], str):
        raise MatcherError(f"{matcher['name']}: the value must be a string")
    if matcher["isRegex"]:
        try:
            re.compile(matcher["value"])
        except re.error as exc:
            raise MatcherError(f"{matcher['name']}: {matcher['value']!r} is not a valid regex ({exc})") from None


def format_matcher(matcher: dict) -> str:
    operator = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}
    return f'{matcher["name"]}{operator[(bool(matcher["isRegex"]), bool(matcher["isEqual"]))]}"{matcher["value"]}"'


def matches_one(matcher: dict, labels: dict) -> bool:
    value = str(labels.get(matcher["name"], ""))
    if matcher["isRegex"]:
        hit = re.fullmatch(matcher["value"], value) is not None
    else:
        hit = value == matcher["value"]
    return hit if matcher["isEqual"] else not hit


def matches(matchers: list[dict], labels: dict) -> bool:
    """True when every matcher matches (an empty list matches nothing: a silence must say what it mutes)."""
    return bool(matchers) and all(matches_one(m, labels) for m in matchers)
