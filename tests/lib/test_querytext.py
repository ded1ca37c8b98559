from __future__ import annotations

import pytest

from poolboard.lib import querytext
from poolboard.lib.querytext import INSUFFICIENT_PRIVILEGE, TRUNCATED, UNPARSABLE, clean, normalize


def test_it_replaces_every_kind_of_literal():
    sql = "SELECT * FROM users WHERE email='alice@example.com' AND id=42 AND x=1.5 AND b=B'101' AND h=X'ff' AND t=$$secret$$"
    assert normalize(sql) == "SELECT * FROM users WHERE email=$1 AND id=$2 AND x=$3 AND b=$4 AND h=$5 AND t=$6"


def test_it_drops_comments_and_folds_whitespace():
    sql = "/* user=alice@example.com */ SELECT  a,\n\t b -- trailing secret 4111\nFROM t"
    out = clean(sql).text
    assert out == "SELECT a, b FROM t"
    assert "alice" not in out and "4111" not in out


def test_it_numbers_after_existing_parameters():
    assert normalize("SELECT $1, $2, 'x'") == "SELECT $1, $2, $3"


def test_card_number_never_survives():
    q = clean("SELECT pg_sleep(3), 'card=4111111111111111' AS secret")
    assert "4111" not in q.text
    assert q.text == "SELECT pg_sleep($1), $2 AS secret"


def test_fingerprint_equal_when_only_constants_differ():
    a = clean("select * from t where id = 1 and name = 'x'")
    b = clean("SELECT * FROM t WHERE id = 99 AND name = 'yy'")
    c = clean("select * from t where other = 1")
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    assert len(a.fingerprint) == 16


def test_unparsable_text_becomes_placeholder():
    q = clean("SELEC oops FROM WHERE 'secret'")
    assert q.text == UNPARSABLE and q.placeholder
    assert "secret" not in q.text


def test_text_cut_at_track_size_becomes_truncated():
    sql = "SELECT '" + "s" * 2000 + "'"
    cut = sql[:1023]  # what the server keeps with track_activity_query_size = 1024
    q = clean(cut)
    assert q.text == TRUNCATED and q.truncated and q.placeholder
    # a short unterminated quote is unparsable, not truncated
    assert clean("SELECT 'abc").text == UNPARSABLE


def test_truncated_text_that_parses_is_normalised_and_flagged():
    sql = "SELECT " + ", ".join(f"c{i}" for i in range(400)) + " FROM t"
    cut = sql[:1023]
    q = clean(cut)
    assert q.truncated
    assert q.text in (TRUNCATED,) or "c0" in q.text


def test_insufficient_privilege_is_kept_and_flagged():
    q = clean("<insufficient privilege>")
    assert q.text == INSUFFICIENT_PRIVILEGE
    assert q.insufficient_privilege and q.placeholder


def test_nul_bytes_are_stripped():
    q = clean("SELECT 'a\x00b', c\x00 FROM t")
    assert "\x00" not in q.text
    assert q.text == "SELECT $1, c FROM t"


def test_invalid_utf8_is_decoded_with_replacement():
    q = clean(b"SELECT '\xff\xfe' , \"col\xc3\" FROM t")
    assert "\ufffd" in q.text  # inside the quoted identifier
    assert q.text.startswith("SELECT $1")


def test_one_megabyte_is_bounded():
    q = clean("SELECT '" + "x" * 1_000_000 + "'")
    assert q.text == TRUNCATED
    q2 = clean("SELECT " + "1," * 500_000 + "1")
    assert len(q2.text) <= querytext.MAX_OUTPUT_CHARS


def test_hostile_markup_passes_through_as_text_only():
    # Normalisation is not escaping: templates must escape. Literals go, identifiers stay.
    q = clean("SELECT '<script>alert(1)</script>', \"<div hx-get='/admin/' hx-trigger='load'>\" FROM t")
    assert "alert(1)" not in q.text
    assert "<div hx-get" in q.text


def test_none_mode_keeps_no_text_but_fingerprints():
    q = clean("SELECT 'secret'", mode="none")
    assert q.text == "" and q.fingerprint == clean("SELECT 'other'").fingerprint


def test_raw_mode_only_when_asked():
    q = clean("SELECT 'secret'", mode="raw")
    assert q.raw and q.text == "SELECT 'secret'"
    assert not clean("SELECT 'secret'").raw
    with pytest.raises(ValueError, match="unknown query text mode 'bogus'"):
        clean("SELECT 1", mode="bogus")


def test_empty_and_none():
    assert clean(None).text == ""
    assert clean("   ").text == ""


def test_placeholders_have_stable_fingerprints():
    assert clean("SELEC x").fingerprint == clean("garbage ((").fingerprint
