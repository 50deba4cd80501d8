"""Reading a plan file: YAML with line numbers in, a validated `Plan` or one `PlanError` out.

The YAML is composed (`yaml.compose`), so every value keeps its node. The
node tree becomes plain data for the model (text as `str`, numbers and
true/false as `values.Scalar`; null entries dropped, merge keys applied,
duplicate keys refused), and a validation error's location (`("rules", 1,
"match")`) is looked up among the nodes for its line, shown as `rules[1].match`.
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
from migrate.plan.endpoints import S3Source, SupabaseSource
from migrate.plan.model import Plan
from migrate.plan.values import credentials_refused
from migrate.plan.values import Invalid, Say, Scalar, describe

Loc = tuple[str | int, ...]
_NATIVE_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"}
_SOURCE_TAGS: dict[str, type[BaseModel]] = {"supabase": SupabaseSource, "s3": S3Source}
_EXPECTED = {"model_type": "a mapping", "dict_type": "a mapping", "tuple_type": "a list", "list_type": "a list", "string_type": "text"}
# Keys people reach for when they try to put credentials in the plan.
_CREDENTIAL_KEYS = set(
    "access_key access_key_id secret_key secret_access_key aws_access_key_id aws_secret_access_key session_token aws_session_token "
    "password service_key service_role_key api_key apikey anon_key token secret jwt jwt_secret".split()
)


def load_plan(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Plan:
    """Read and validate the plan file at `path`; `environ` (default `os.environ`) supplies `${VAR}` values.

    Raises `PlanError` naming the file, line and key for anything wrong, including a file that cannot be read.
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
    nodes: dict[Loc, tuple[Node | None, Node]] = {(): (None, root)}
    data = _data(root, (), nodes, source_name)
    if not isinstance(data, dict):
        raise PlanError(f"expected a mapping with version, source and destination, got {describe(data)}", path=source_name, line=_line(root))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(source_name).stem).strip("-._")[:100] or "plan"
    context = {"environ": os.environ if environ is None else environ, "default_name": stem}
    try:
        data = {key: value for key, value in data.items() if not key.startswith("x-")}
        plan = Plan.model_validate(data, context=context, by_alias=True, by_name=False)  # a file spells keys as the schema does
    except ValidationError as err:
        # Every problem is found; the first in the file is reported (pydantic lists them in field order).
        problems = [_problem(error, nodes, source_name) for error in err.errors(include_url=False)]
        raise min(problems, key=lambda problem: problem.line or 0) from None
    plan._path = source_name
    return plan


def _compose(text: str, path: str) -> Node:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "cannot parse"
        if err.context and err.problem:  # PyYAML splits one sentence: "expected X" + "but found Y", or "while ..." + the problem
            problem = f"{err.context}, {err.problem}" if err.context.startswith("expected") else f"{err.problem} ({err.context})"
        hint = "; YAML indents with spaces, not tabs" if "\\t" in problem or "\t" in problem else ""
        raise PlanError(f"invalid YAML: {problem}{hint}", path=path, line=None if mark is None else mark.line + 1) from None
    except yaml.YAMLError as err:
        raise PlanError(f"invalid YAML: {err}", path=path) from None
    if root is None:
        raise PlanError("the plan is empty; start with 'version: 1', then source: and destination:", path=path)
    return root


def _data(node: Node, loc: Loc, nodes: dict[Loc, tuple[Node | None, Node]], path: str) -> Any:
    """Plain data from `node`, recording the (key, value) nodes of every location below `loc` in `nodes`."""
    if isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            nodes[loc + (index,)] = (None, item)
        return [_data(item, loc + (index,), nodes, path) for index, item in enumerate(node.value)]
    if isinstance(node, ScalarNode):
        if node.tag == "tag:yaml.org,2002:null":
            return None
        return Scalar(node.value, yaml.constructor.SafeConstructor().construct_object(node)) if node.tag in _NATIVE_TAGS else node.value
    entries: dict[str, tuple[Node, Node]] = {}
    merged: dict[str, tuple[Node, Node]] = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: explicit keys win over merged ones
            for source in value_node.value if isinstance(value_node, SequenceNode) else [value_node]:
                if not isinstance(source, MappingNode):
                    raise PlanError(f"expected a mapping to merge, got {describe(_data(source, loc, {}, path))}", path=path, line=_line(source), key=_key(loc) or None)
                merged.update({k.value: (k, v) for k, v in source.value if k.value not in merged})
        elif not isinstance(key_node, ScalarNode):
            raise PlanError("keys must be plain names, not lists or mappings", path=path, line=_line(key_node), key=_key(loc) or None)
        elif key_node.value in entries:
            first = _line(entries[key_node.value][0])
            raise PlanError(f"duplicate key (first at line {first}); the second would silently win", path=path, line=_line(key_node), key=_key(loc + (key_node.value,)))
        else:
            entries[key_node.value] = (key_node, value_node)
    out = {}
    for name, (key_node, value_node) in {**merged, **entries}.items():
        if not (isinstance(value_node, ScalarNode) and value_node.tag == "tag:yaml.org,2002:null"):  # `key:` alone is not given
            nodes[loc + (name,)] = (key_node, value_node)
            out[name] = _data(value_node, loc + (name,), nodes, path)
    return out


# --------------------------------------------------------------------------- errors


def _line(node: Node | None) -> int | None:
    return None if node is None else node.start_mark.line + 1


def _key(loc: Loc) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _found(loc: Loc, nodes: dict[Loc, tuple[Node | None, Node]]) -> tuple[Loc, Node]:
    """The part of `loc` the file holds (plus a missing last key of a mapping) and the node to show the line of."""
    end = max(length for length in range(len(loc) + 1) if loc[:length] in nodes)
    node = nodes[loc[:end]][1]
    if end == len(loc) - 1 and isinstance(node, MappingNode) and isinstance(loc[-1], str):
        return loc, node
    return loc[:end], node


def _walk(loc: Loc) -> tuple[type[BaseModel] | None, Any]:
    """The model at `loc` (None below the models) and the FieldInfo of its last named part."""
    model: Any = Plan
    info = None
    for part in loc:
        if part in _SOURCE_TAGS and model in (SupabaseSource, S3Source):
            model = _SOURCE_TAGS[str(part)]  # a tagged union's location names the member
        elif isinstance(part, str) and model is not None:
            info = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
            model = _model_in(info.annotation) if info is not None else None
    return model, info


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, typing.get_args(annotation)) if m is not None), None)


def _say(info: Any) -> Say:
    return next((m for m in getattr(info, "metadata", ()) if isinstance(m, Say)), Say())


def _unknown_key(name: str, given: Any, model: Any) -> str:
    if name.lower() in _CREDENTIAL_KEYS:
        return str(credentials_refused(given, model.credentials_hint))
    allowed = sorted({f.alias or n for n, f in model.model_fields.items() if n not in getattr(model, "resolved", ())} | set(model.synonyms))
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    return f"unknown key; {f'did you mean {close[0]!r}? ' if close else ''}expected one of: {', '.join(allowed)}"


def _problem(error: Any, nodes: dict[Loc, tuple[Node | None, Node]], path: str) -> PlanError:
    """One pydantic error as a `PlanError` at the line and key it is about."""
    raw_loc: Loc = tuple(error["loc"])
    loc = tuple(part for index, part in enumerate(raw_loc) if not (index == 1 and raw_loc[0] == "source" and part in _SOURCE_TAGS))
    kind, given, cause = error["type"], error.get("input"), (error.get("ctx") or {}).get("error")
    say = _say(_walk(raw_loc)[1])
    target = line_target = loc
    if kind == "extra_forbidden":
        key_line = _line(nodes[loc][0]) if loc in nodes else None
        return PlanError(_unknown_key(str(loc[-1]), given, _walk(raw_loc[:-1])[0] or Plan), path=path, line=key_line, key=_key(loc))
    if isinstance(cause, Invalid):
        target = _resolve(loc, cause.at)
        line_target = _resolve(loc, cause.at if cause.line_at is None else cause.line_at)
        message = str(cause) + (f"; {say.missing or 'give a value'}" if cause.hinted else "")
        for name, relative in cause.lines.items():
            message = message.replace("{" + name + "}", str(_line(_found(_resolve(loc, relative), nodes)[1])))
    elif kind == "missing":
        message = "required key is missing" + (f"; {say.missing}" if say.missing else "")
    else:
        expected = (say.item if isinstance(raw_loc[-1], int) else say.expected) or _EXPECTED.get(kind)
        message = f"expected {expected}, got {describe(given)}" if expected else error["msg"]
    return PlanError(message, path=path, line=_line(_found(line_target, nodes)[1]), key=_key(_found(target, nodes)[0]) or None)


def _resolve(loc: Loc, relative: tuple) -> Loc:
    for part in relative:
        loc = loc[:-1] if part == ".." else loc + (part,)
    return loc
