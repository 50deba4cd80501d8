"""Reading a plan file: YAML with line numbers in, a validated `Plan` or one `PlanError` out.

The YAML is composed (`yaml.compose`), so every value keeps the node it
came from; the node tree becomes plain data (text as `str`, numbers and
true/false as `values.Scalar`, null entries dropped, merge keys applied,
duplicate keys refused) that the model validates. A validation error's
location (`("rules", 1, "match")`) is looked up in the node index to name
the line, and rendered as `rules[1].match`.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from migrate.errors import PlanError
from migrate.plan.model import Plan, SupabaseSource, S3Source, credentials_refused
from migrate.plan.values import Expected, Hint, Invalid, Scalar, describe

_NATIVE_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"}
_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SOURCE_TAGS: dict[str, type[BaseModel]] = {"supabase": SupabaseSource, "s3": S3Source}
# Keys people reach for when they try to put credentials in the plan.
_CREDENTIAL_KEYS = frozenset(
    "access_key access_key_id secret_key secret_access_key aws_access_key_id aws_secret_access_key session_token "
    "aws_session_token password service_key service_role_key api_key apikey anon_key token secret jwt".split()
)
_CONSTRUCTOR = yaml.constructor.SafeConstructor()

Loc = tuple[str | int, ...]


def load_plan(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Plan:
    """Read and validate the plan file at `path`.

    `environ` (default `os.environ`) supplies `${VAR}` values. Raises
    `PlanError` naming the file, line and key for anything wrong, including
    a file that cannot be read or is not valid YAML.
    """
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError("plan file not found; check the path (plans live in plans/)", path=shown) from None
    except UnicodeDecodeError as err:
        raise PlanError(f"plan file is not UTF-8 text (byte {err.start})", path=shown) from None
    except OSError as err:
        raise PlanError(f"cannot read the plan file: {err.strerror or err}", path=shown) from None
    return parse_plan(text, source_name=shown, environ=environ)


def parse_plan(text: str, *, source_name: str, environ: Mapping[str, str] | None = None) -> Plan:
    """Validate plan YAML `text`; `source_name` is the file name used in messages and the default name."""
    root = _compose(text, source_name)
    index: dict[Loc, tuple[Node | None, Node]] = {(): (None, root)}
    data = _data(root, (), index, source_name)
    if not isinstance(data, dict):
        raise PlanError(f"expected a mapping with version, source and destination, got {describe(data)}", path=source_name, line=_line(root))
    data = {key: value for key, value in data.items() if not key.startswith("x-")}
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(source_name).stem).strip("-._")[:100] or "plan"
    try:
        plan = Plan.model_validate(data, context={"environ": os.environ if environ is None else environ, "default_name": stem})
    except ValidationError as err:
        problems = [_problem(error, index, source_name) for error in err.errors(include_url=False)]
        raise min(problems, key=lambda problem: problem.line or 0) from None
    plan._path = source_name
    return plan


# --------------------------------------------------------------------------- YAML to data


def _compose(text: str, path: str) -> Node:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "cannot parse"
        if err.context and err.problem:
            # PyYAML splits one sentence in two: "expected X" + "but found Y", or "while ..." + the problem.
            problem = f"{err.context}, {err.problem}" if err.context.startswith("expected") else f"{err.problem} ({err.context})"
        hint = "; YAML indents with spaces, not tabs" if "\\t" in problem or "\t" in problem else ""
        raise PlanError(f"invalid YAML: {problem}{hint}", path=path, line=None if mark is None else mark.line + 1) from None
    except yaml.YAMLError as err:
        raise PlanError(f"invalid YAML: {err}", path=path) from None
    if root is None:
        raise PlanError("the plan is empty; start with 'version: 1', then source: and destination:", path=path)
    return root


def _data(node: Node, loc: Loc, index: dict[Loc, tuple[Node | None, Node]], path: str) -> Any:
    """Plain data from a node, recording the nodes of every location below `loc` in `index`."""
    if isinstance(node, SequenceNode):
        out_list = []
        for position, item in enumerate(node.value):
            index[loc + (position,)] = (None, item)
            out_list.append(_data(item, loc + (position,), index, path))
        return out_list
    if isinstance(node, ScalarNode):
        if node.tag == _NULL_TAG:
            return None
        return Scalar(node.value, _CONSTRUCTOR.construct_object(node)) if node.tag in _NATIVE_TAGS else node.value
    entries: dict[str, tuple[Node, Node]] = {}
    merged: dict[str, tuple[Node, Node]] = {}
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:  # `<<: *defaults`: explicit keys win over merged ones
            for source in value_node.value if isinstance(value_node, SequenceNode) else [value_node]:
                if not isinstance(source, MappingNode):
                    raise PlanError(f"expected a mapping to merge, got {describe(_data(source, loc, {}, path))}", path=path, line=_line(source), key=_key(loc) or None)
                for key_child, value_child in source.value:
                    merged.setdefault(key_child.value, (key_child, value_child))
            continue
        if not isinstance(key_node, ScalarNode):
            raise PlanError("keys must be plain names, not lists or mappings", path=path, line=_line(key_node), key=_key(loc) or None)
        if key_node.value in entries:
            first = _line(entries[key_node.value][0])
            raise PlanError(f"duplicate key (first at line {first}); the second would silently win", path=path, line=_line(key_node), key=_key(loc + (key_node.value,)))
        entries[key_node.value] = (key_node, value_node)
    out: dict[str, Any] = {}
    for name, (key_node, value_node) in {**merged, **entries}.items():
        if isinstance(value_node, ScalarNode) and value_node.tag == _NULL_TAG:
            continue  # `key:` with nothing after it counts as not given
        index[loc + (name,)] = (key_node, value_node)
        out[name] = _data(value_node, loc + (name,), index, path)
    return out


# --------------------------------------------------------------------------- errors


def _line(node: Node | None) -> int | None:
    return None if node is None else node.start_mark.line + 1


def _key(loc: Loc) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _resolve(loc: Loc, relative: tuple) -> Loc:
    for part in relative:
        loc = loc[:-1] if part == ".." else loc + (part,)
    return loc


def _shown(loc: Loc, index: dict[Loc, tuple[Node | None, Node]]) -> tuple[Loc, Node | None, bool]:
    """The part of `loc` the file has (plus a missing last key of a mapping), its node, and whether it was found whole."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in index:
            node = index[loc[:end]][1]
            if end == len(loc) - 1 and isinstance(node, MappingNode) and isinstance(loc[-1], str):
                return loc, node, False
            return loc[:end], node, end == len(loc)
    return (), None, False


def _walk(loc: Loc) -> tuple[type[BaseModel] | None, Any]:
    """The model at `loc` (None past the models) and the FieldInfo of its last named part."""
    model: type[BaseModel] | None = Plan
    info = None
    for part in loc:
        if isinstance(part, str) and part in _SOURCE_TAGS and model in (SupabaseSource, S3Source):
            model = _SOURCE_TAGS[part]  # a tagged union's location names the member
        elif isinstance(part, str) and model is not None:
            info = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
            model = _model_in(info.annotation) if info is not None else None
    return model, info


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, typing.get_args(annotation)) if m is not None), None)


def _marker(info: Any, kind: type) -> str | None:
    return next((m.text for m in getattr(info, "metadata", ()) if isinstance(m, kind)), None)


def _unknown_key(name: str, given: Any, model: type[BaseModel]) -> str:
    if name.lower() in _CREDENTIAL_KEYS:
        return str(credentials_refused(given, model.credentials_hint))  # type: ignore[attr-defined]
    resolved = getattr(model, "resolved", ())
    allowed = sorted({f.alias or n for n, f in model.model_fields.items() if n not in resolved} | set(model.synonyms))  # type: ignore[attr-defined]
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {suggestion}expected one of: {', '.join(allowed)}"


_EXPECTED = {"model_type": "a mapping", "dict_type": "a mapping", "tuple_type": "a list", "list_type": "a list", "string_type": "text"}


def _problem(error: Any, index: dict[Loc, tuple[Node | None, Node]], path: str) -> PlanError:
    """One pydantic error as a `PlanError` at the line and key it is about."""
    raw_loc: Loc = tuple(error["loc"])
    loc = tuple(p for i, p in enumerate(raw_loc) if not (i == 1 and raw_loc[0] == "source" and p in _SOURCE_TAGS))
    kind, given, cause = error["type"], error.get("input"), (error.get("ctx") or {}).get("error")
    _, info = _walk(raw_loc)
    target = line_target = loc
    if isinstance(cause, Invalid):
        target = _resolve(loc, cause.at)
        line_target = _resolve(loc, cause.line_at if cause.line_at is not None else cause.at)
        message = str(cause)
        for name, relative in cause.lines.items():
            message = message.replace("{" + name + "}", str(_line(_shown(_resolve(loc, relative), index)[1])))
        if cause.hinted:
            message += f"; {_marker(info, Hint) or 'give a value'}"
    elif kind == "missing":
        hint = _marker(info, Hint)
        message = "required key is missing" + (f"; {hint}" if hint else "")
    elif kind == "extra_forbidden":
        model = _walk(raw_loc[:-1])[0] or Plan
        key_node = index.get(loc, (None, None))[0]
        return PlanError(_unknown_key(str(loc[-1]), given, model), path=path, line=_line(key_node), key=_key(loc))
    else:
        expected = _marker(info, Expected) or _EXPECTED.get(kind)
        message = f"expected {expected}, got {describe(given)}" if expected else error["msg"]
    return PlanError(message, path=path, line=_line(_shown(line_target, index)[1]), key=_key(_shown(target, index)[0]) or None)
