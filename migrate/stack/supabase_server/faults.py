"""Fault injection for the bundled Supabase Storage server (not a Supabase feature).

Rules are matched in order; the first live rule that matches a request is
consumed. `method` must equal the request's (any method when absent), `path`
is a regular expression searched in the request path as sent (percent-encoded,
`/storage/v1` included) and `query` one searched in its query string:

- ``status``: answer with that HTTP status (429, 500, 503, ...) and the real
  server's error body for it, without touching the catalog or the bytes.
- ``latency``: wait ``delay_ms`` and then serve the request normally.
- ``drop``: close the connection without sending a response.
- ``truncate``: send the real headers (full ``Content-Length``) and close the
  connection after ``after_bytes`` bytes of the body.

A rule with ``count`` N fires N times (default 1); ``count: null`` fires until
the rules are cleared. ``/storage/v1/status`` and ``/storage/v1/_faults`` are
never faulted. The rule format follows migrate.stack.faultproxy's, so
transfer tests read the same for both stores.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

Action = Literal["status", "latency", "drop", "truncate"]
ACTIONS: tuple[Action, ...] = ("status", "latency", "drop", "truncate")


class InvalidFaultRule(ValueError):
    """A rule that cannot be used; the message says which field is wrong."""


@dataclass
class FaultRule:
    """One rule; see the module docstring for the fields."""

    action: Action
    path: str = ".*"
    method: str | None = None
    query: str | None = None
    status: int = 500
    count: int | None = 1
    delay_ms: int = 0
    after_bytes: int = 0
    retry_after: int | None = None

    def __post_init__(self) -> None:
        self._path = re.compile(self.path)
        self._query = re.compile(self.query) if self.query is not None else None

    def matches(self, method: str, path: str, query: str) -> bool:
        """Whether this live rule applies to the request."""
        if self.count is not None and self.count <= 0:
            return False
        if self.method and self.method.upper() != method:
            return False
        if not self._path.search(path):
            return False
        return self._query is None or self._query.search(query) is not None

    def to_json(self) -> dict[str, Any]:
        """The rule as `GET /_faults` shows it (count is what remains)."""
        return {
            "action": self.action,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "count": self.count,
            "delay_ms": self.delay_ms,
            "after_bytes": self.after_bytes,
            "retry_after": self.retry_after,
        }


def _int_field(raw: dict[str, Any], name: str, default: int | None, *, minimum: int = 0) -> int | None:
    value = raw.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidFaultRule(f"fault rule field {name!r} must be an integer >= {minimum}, got {value!r}")
    return value


def rule_from_json(raw: Any) -> FaultRule:
    """One rule from its JSON form; raises InvalidFaultRule naming the bad field."""
    if not isinstance(raw, dict):
        raise InvalidFaultRule(f"a fault rule must be an object, got {raw!r}")
    unknown = set(raw) - {"action", "method", "path", "query", "status", "count", "delay_ms", "after_bytes", "retry_after"}
    if unknown:
        raise InvalidFaultRule(f"unknown fault rule field(s): {', '.join(sorted(unknown))}")
    action = raw.get("action")
    if action not in ACTIONS:
        raise InvalidFaultRule(f"fault rule 'action' must be one of {', '.join(ACTIONS)}, got {action!r}")
    status = _int_field(raw, "status", 500, minimum=100)
    if status is None or status > 599:
        raise InvalidFaultRule(f"fault rule 'status' must be an HTTP status, got {raw.get('status')!r}")
    try:
        return FaultRule(
            action=cast(Action, action),
            path=str(raw.get("path") or ".*"),
            method=str(raw["method"]).upper() if raw.get("method") else None,
            query=str(raw["query"]) if raw.get("query") is not None else None,
            status=status,
            count=_int_field(raw, "count", 1),
            delay_ms=_int_field(raw, "delay_ms", 0) or 0,
            after_bytes=_int_field(raw, "after_bytes", 0) or 0,
            retry_after=_int_field(raw, "retry_after", None),
        )
    except re.error as err:
        raise InvalidFaultRule(f"fault rule has an invalid regular expression: {err}") from err


def rules_from_json(document: Any) -> list[FaultRule]:
    """Rules from `{"rules": [...]}` or a bare list."""
    if isinstance(document, dict):
        document = document.get("rules")
    if not isinstance(document, list):
        raise InvalidFaultRule('fault rules must be {"rules": [...]} or a list of rules')
    return [rule_from_json(item) for item in document]


def parse_rules(text: str | None) -> list[FaultRule]:
    """Rules from a CLI/env value: JSON text, or `@path` to a JSON file."""
    if not text:
        return []
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidFaultRule(f"fault rules are not valid JSON: {err}") from err
    return rules_from_json(document)


class FaultInjector:
    """The live rule list, shared by all request threads."""

    def __init__(self, rules: list[FaultRule] | None = None):
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = list(rules or [])

    def add(self, rules: list[FaultRule]) -> None:
        """Append rules after the existing ones."""
        with self._lock:
            self._rules.extend(rules)

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        """The rules, as JSON documents."""
        with self._lock:
            return [rule.to_json() for rule in self._rules]

    def take(self, method: str, path: str, query: str) -> FaultRule | None:
        """The first live rule matching this request, with its count decremented."""
        if not self._rules:  # the common case; a stale read only delays a new rule by one request
            return None
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path, query):
                    if rule.count is not None:
                        rule.count -= 1
                    return rule
        return None
