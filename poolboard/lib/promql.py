"""PromQL rendering with safe quoting.

Label values only ever reach PromQL as quoted string literals: a value typed in the
admin such as `x"} or vector(1) #` must match exactly that label value and nothing
else (reliability.md F9). Label names and durations are validated, never quoted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
DURATION_RE = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
# `$1`-style back-references (label_replace) are not placeholders.
PLACEHOLDER_RE = re.compile(r"\$([a-zA-Z_]+)")
SUBSTITUTE_RE = re.compile(r",\$sel\b|\$sel\b|\$by\b|\$w\b")


class PromQLError(ValueError):
    """A label name, duration or template that cannot be rendered safely."""


def quote(value: str) -> str:
    """Quote a label value as a PromQL double-quoted string literal.

    PromQL strings follow Go's escaping: backslash, double quote and control
    characters must be escaped. Everything else (including non-ASCII) is literal.
    """
    out = ['"']
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def check_label_name(name: str) -> str:
    if not LABEL_NAME_RE.match(name or ""):
        raise PromQLError(f"{name!r} is not a valid Prometheus label name")
    return name


def check_duration(window: str) -> str:
    if not DURATION_RE.match(window or ""):
        raise PromQLError(f"{window!r} is not a PromQL duration (e.g. 30s, 5m, 1h)")
    return window


DURATION_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
DURATION_PART_RE = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")


def duration_seconds(window: str) -> float:
    """A PromQL duration in seconds: '1h30m' -> 5400.0."""
    check_duration(window)
    return float(sum(int(n) * DURATION_UNITS_S[unit] for n, unit in DURATION_PART_RE.findall(window)))


def regex_escape(value: str) -> str:
    """Escape a literal for use inside a PromQL (RE2) regex, before quoting."""
    return re.sub(r"([.+*?()|\[\]{}^$\\])", r"\\\1", value)


def matchers(equal: Mapping[str, str] | None = None, *, one_of: Mapping[str, Iterable[str]] | None = None) -> str:
    """Render label matchers (without braces): `a="x",b=~"^(?:p|q)$"`.

    `one_of` values become an anchored alternation of escaped literals, so a value
    with regex metacharacters still matches only itself.
    """
    parts: list[str] = []
    for name, value in (equal or {}).items():
        parts.append(f"{check_label_name(name)}={quote(value)}")
    for name, values in (one_of or {}).items():
        alternatives = "|".join(regex_escape(v) for v in sorted(set(values)))
        parts.append(f"{check_label_name(name)}=~{quote(alternatives)}")
    return ",".join(parts)


def render(template: str, *, by: Iterable[str], sel: str = "", window: str = "5m") -> str:
    """Fill a preset template's placeholders.

    - `$by`: grouping labels, comma separated (validated label names);
    - `$sel`: extra matchers from `matchers()`; `,$sel` collapses when empty so the
      text stays clean (`{state="used"}` rather than `{state="used",}`);
    - `$w`: the rate window (validated duration).
    """
    unknown = set(PLACEHOLDER_RE.findall(template)) - {"by", "sel", "w"}
    if unknown:
        raise PromQLError(f"unknown placeholder ${sorted(unknown)[0]} in template {template!r}")
    by_text = ", ".join(check_label_name(label) for label in by)
    # Placeholders are replaced in the template only, never in substituted text, so
    # a label value containing "$w" stays literal.
    window = check_duration(window)
    replacements = {",$sel": f",{sel}" if sel else "", "$sel": sel, "$by": by_text, "$w": window}
    return SUBSTITUTE_RE.sub(lambda m: replacements[m.group(0)], template)
