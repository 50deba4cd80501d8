"""The stack's PostgreSQL database: created with our comment, dropped only if it carries it.

Never touching what we did not create: the stack's database carries the
comment `created by migrate stack`; an existing database without it is
refused, and `drop_database` drops a database only if it carries it.
Connection failures become one-line `StackError`s naming the server and the
reason, libpq's wording made short.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from migrate.errors import UserInputError
from migrate.stack.process import StackError

STACK_COMMENT = "created by migrate stack"
_DATABASE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def _pg_address(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - an unparsable URL still deserves a message
        return "the --pg-url server"
    return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"


# libpq/PostgreSQL wording -> the short reason our one-line messages give.
_PG_REASONS = (
    (re.compile(r"connection refused", re.IGNORECASE), "connection refused"),
    (re.compile(r"timeout|timed out", re.IGNORECASE), "timed out"),
    (re.compile(r"password authentication failed", re.IGNORECASE), "authentication failed"),
    (re.compile(r"no password supplied", re.IGNORECASE), "a password is required"),
    (re.compile(r'database ".*" does not exist', re.IGNORECASE), "the database in --pg-url does not exist"),
    (re.compile(r'role ".*" does not exist', re.IGNORECASE), "the user in --pg-url does not exist"),
    (re.compile(r"permission denied to create database", re.IGNORECASE), "not allowed to create databases"),
    (re.compile(r"could not translate host name", re.IGNORECASE), "unknown host"),
)


def pg_reason(err: Exception) -> str:
    """The short reason of a psycopg error, for one-line messages."""
    text = str(err).strip()
    for pattern, reason in _PG_REASONS:
        if pattern.search(text):
            return reason
    return text.splitlines()[0][:160] if text else type(err).__name__


def database_url_for(admin_url: str, database: str) -> str:
    """`admin_url` (a postgresql:// URL) with its database replaced by `database`."""
    parts = urllib.parse.urlsplit(admin_url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise UserInputError("--pg-url must be a postgresql:// URL, e.g. postgresql://postgres@127.0.0.1:5432/postgres")
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


def _check_database_name(name: str) -> None:
    if not name or len(name) > 63 or not set(name) <= _DATABASE_NAME_CHARS or name[0].isdigit():
        raise UserInputError(
            f"--database {name!r}: use lowercase letters, digits and underscores (at most 63, not starting with a digit)"
        )


def _connect_admin(admin_url: str) -> Any:
    import psycopg

    try:
        return psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        raise StackError(
            f"cannot connect to PostgreSQL at {_pg_address(admin_url)} ({pg_reason(err)}); "
            "start PostgreSQL or pass --pg-url postgresql://USER@HOST:PORT/postgres"
        ) from err


def _database_comment(conn: Any, name: str) -> tuple[bool, str | None]:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
    ).fetchone()
    return (row is not None, row[0] if row else None)


def ensure_database(admin_url: str, name: str) -> str:
    """Create the stack's database (marked with our comment) unless it exists; return its URL.

    Raises StackError if a database of that name exists without our comment:
    it is someone else's, and we never touch it.
    """
    import psycopg

    _check_database_name(name)
    database_url = database_url_for(admin_url, name)
    try:
        _ensure_database(admin_url, name)
    except psycopg.Error as err:
        raise StackError(
            f"cannot create database {name} on {_pg_address(admin_url)} ({pg_reason(err)}); "
            "pass --pg-url with a user allowed to create databases"
        ) from err
    return database_url


def _ensure_database(admin_url: str, name: str) -> None:
    from psycopg import errors, sql

    with _connect_admin(admin_url) as conn:
        exists, comment = _database_comment(conn, name)
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except errors.DuplicateDatabase:
                exists, comment = _database_comment(conn, name)  # created by someone else meanwhile
            else:
                try:
                    conn.execute(
                        sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(STACK_COMMENT))
                    )
                except Exception:
                    # An unmarked database would be refused next time: do not leave one behind.
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                    raise
                return
        if comment != STACK_COMMENT:
            raise StackError(
                f"database {name} on {_pg_address(admin_url)} already exists and was not created by migrate stack; "
                "pass --database NAME to use a new one (migrate never touches a database it did not create)"
            )


def drop_database(admin_url: str, name: str) -> bool:
    """Drop the stack's database if it exists and carries our comment. Returns whether it did."""
    from psycopg import sql

    with _connect_admin(admin_url) as conn:
        exists, comment = _database_comment(conn, name)
        if not exists or comment != STACK_COMMENT:
            return False
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    return True
