"""Query text from pg_stat_activity, made safe to store.

`pg_stat_activity.query` is never normalised by PostgreSQL: a monitor with
pg_read_all_stats sees raw literals (card numbers, e-mail addresses, tokens).
This module replaces every literal with `$n` and drops comments using the
PostgreSQL scanner shipped with pglast (libpg_query), and fails closed:
text that does not parse is stored as a placeholder, never raw.

HTML escaping is a separate, mandatory step at render time: `<script>` inside
a quoted identifier survives normalisation unchanged.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from pglast import parser

UNPARSABLE = "<unparsable query>"
TRUNCATED = "<truncated query>"
INSUFFICIENT_PRIVILEGE = "<insufficient privilege>"
PLACEHOLDERS = frozenset({UNPARSABLE, TRUNCATED, INSUFFICIENT_PRIVILEGE})

# Modes, as pganalyze's filter_query_sample: "normalize" (default) strips
# literals and comments, "none" keeps no text at all (only the fingerprint),
# "raw" keeps the text as sent; only when a setting explicitly asks for it.
MODES = ("normalize", "none", "raw")

# PostgreSQL's default track_activity_query_size (bytes); the text it keeps is
# at most this minus one byte.
DEFAULT_TRACK_SIZE = 1024

# Hostile input is bounded before anything else looks at it: 1 MB of text
# costs no more than this.
MAX_INPUT_CHARS = 16_384
# Normalised output is bounded too (`1,1,1` -> `$1,$2,$3` grows the text).
MAX_OUTPUT_CHARS = 4_096

LITERAL_TOKENS = frozenset({"SCONST", "USCONST", "ICONST", "FCONST", "BCONST", "XCONST"})
COMMENT_TOKENS = frozenset({"C_COMMENT", "SQL_COMMENT"})


@dataclass(frozen=True)
class QueryText:
    text: str  # what may be stored and shown (always HTML-escape it)
    fingerprint: str  # 16 hex digits; equal for queries differing only in constants
    placeholder: bool = False  # text is one of PLACEHOLDERS
    truncated: bool = False  # the server cut the text (track_activity_query_size)
    insufficient_privilege: bool = False  # the monitor role lacks pg_read_all_stats
    raw: bool = False  # text is the raw query (explicit setting only)


def to_text(value: str | bytes | None) -> str:
    """Decode bytes with replacement, strip NUL bytes, bound the length."""

    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value[: MAX_INPUT_CHARS * 4]).decode("utf-8", errors="replace")
    value = value[: MAX_INPUT_CHARS + 1]
    # PostgreSQL text cannot hold \x00, and libpg_query would stop at it.
    return value.replace("\x00", "")


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="replace")).hexdigest()[:16]


def _placeholder(text: str, **flags: bool) -> QueryText:
    return QueryText(text=text, fingerprint=_hash(text), placeholder=True, **flags)


def normalize(sql: str) -> str:
    """Replace literals with $n and drop comments; fold whitespace.

    Raises pglast's ParseError when the scanner cannot tokenise the text
    (e.g. an unterminated quote in truncated text).
    """

    tokens = parser.scan(sql)
    # Existing $n parameters (extended protocol) keep their numbers; ours
    # continue after the highest one, as pg_stat_statements does.
    n = 0
    for tok in tokens:
        if tok.name == "PARAM":
            digits = sql[tok.start + 1 : tok.end + 1]
            if digits.isdigit():
                n = max(n, int(digits))
    out: list[str] = []
    prev_end = None
    gap = False
    for tok in tokens:
        if prev_end is not None and tok.start > prev_end + 1:
            gap = True
        prev_end = tok.end
        if tok.name in COMMENT_TOKENS:
            gap = True
            continue
        if out and gap:
            out.append(" ")
        gap = False
        if tok.name in LITERAL_TOKENS:
            n += 1
            out.append(f"${n}")
        else:
            out.append(sql[tok.start : tok.end + 1])
    return "".join(out).strip()


def clean(
    query: str | bytes | None,
    mode: str = "normalize",
    track_size: int = DEFAULT_TRACK_SIZE,
) -> QueryText:
    """Like _clean, memoised: a snapshot repeats the same few query texts many times.

    Bounded: at most 4096 entries of at most 1024-character keys (the source cuts
    query text in SQL); longer input is not memoised.
    """

    if isinstance(query, str) and len(query) <= 2048:
        return _clean_cached(query, mode, track_size)
    return _clean(query, mode, track_size)


def _clean(
    query: str | bytes | None,
    mode: str = "normalize",
    track_size: int = DEFAULT_TRACK_SIZE,
) -> QueryText:
    """Turn pg_stat_activity.query into something safe to store.

    1. Decode (invalid UTF-8 replaced), strip NUL bytes, bound to MAX_INPUT_CHARS.
    2. `<insufficient privilege>` stays as such, flagged.
    3. Text the server may have cut (its length reaches track_size - 1 bytes,
       give or take a multibyte character) is flagged truncated.
    4. Parse (pglast fingerprint). On failure the text becomes
       `<truncated query>` or `<unparsable query>`: never raw.
    5. Normalise (literals -> $n, comments dropped) unless mode is
       "none" (no text) or "raw" (explicit setting only).
    """

    if mode not in MODES:
        raise ValueError(f"unknown query text mode {mode!r}")
    text = to_text(query)
    stripped = text.strip()
    if stripped == INSUFFICIENT_PRIVILEGE:
        return _placeholder(INSUFFICIENT_PRIVILEGE, insufficient_privilege=True)
    if not stripped:
        return QueryText(text="", fingerprint=_hash(""))

    too_long = len(text) > MAX_INPUT_CHARS
    if too_long:
        text = text[:MAX_INPUT_CHARS]
    # The server clips at a character boundary at or below track_size - 1 bytes.
    nbytes = len(text.encode("utf-8", errors="replace"))
    truncated = too_long or (track_size > 0 and nbytes >= track_size - 4)

    try:
        fingerprint = parser.fingerprint(text)
        normalized = normalize(text)
    except Exception:  # pglast ParseError, or anything odd from the C side: fail closed
        return _placeholder(TRUNCATED if truncated else UNPARSABLE, truncated=truncated)

    if mode == "none":
        return QueryText(text="", fingerprint=fingerprint, truncated=truncated)
    if mode == "raw":
        return QueryText(
            text=text[:MAX_OUTPUT_CHARS], fingerprint=fingerprint, truncated=truncated, raw=True
        )
    if len(normalized) > MAX_OUTPUT_CHARS:
        normalized = normalized[: MAX_OUTPUT_CHARS - 1] + "…"
    return QueryText(text=normalized, fingerprint=fingerprint, truncated=truncated)


_clean_cached = functools.lru_cache(maxsize=4096)(_clean)
