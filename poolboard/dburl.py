"""The one reader of PostgreSQL database URLs in poolboard (settings, bootstrap, demo, benchmarks).

Built on psycopg's conninfo helpers, which parse with libpq itself: what we read from a
URL is exactly what the driver will connect to (percent-escapes, IPv6 hosts, ?options,
and `key=value` conninfo strings too). No Django here: the demo and the benchmarks use it
before, or without, Django.
"""

from __future__ import annotations

import re

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# A SQLAlchemy-style scheme names a driver (postgresql+psycopg://); libpq knows none.
_DRIVER_SCHEME = re.compile(r"^(postgres(?:ql)?)\+[A-Za-z0-9_]+://")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class DatabaseUrlError(ValueError):
    """The URL cannot name a PostgreSQL database; the message says what is wrong."""


def parse(url: str) -> dict[str, str]:
    """libpq's connection parameters of `url`: dbname, user, password, host, port, options.

    Accepts postgresql:// and postgres:// URLs (with or without a +driver) and key=value
    conninfo strings. Parameters the URL does not give are left out.
    """
    url = _DRIVER_SCHEME.sub(r"\1://", url.strip())
    scheme = _SCHEME.match(url)
    if scheme and scheme.group(1) not in ("postgres", "postgresql"):
        raise DatabaseUrlError(f"must start with postgresql:// (got scheme {scheme.group(1)!r})")
    try:
        params = conninfo_to_dict(url)
    except ProgrammingError:
        # libpq's message quotes the part it could not read, which may be the password.
        raise DatabaseUrlError("is neither a postgresql:// URL nor a key=value conninfo string") from None
    if not str(params.get("port", "0")).isdigit():
        raise DatabaseUrlError("has a port that is not a number")
    return {key: str(value) for key, value in params.items()}


def with_dbname(url: str, dbname: str) -> str:
    """The same server, user and options as `url`, on database `dbname` (a conninfo string)."""
    return make_conninfo(url, dbname=dbname)
