"""The plan's JSON Schema: generated from the model, kept current in plans/, and agreeing with the loader."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from migrate.cli import main
from migrate.errors import PlanError
from migrate.plan import parse_plan, plan_json_schema
from tests.test_plan import ENV, MINIMAL

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "plans" / "plan.schema.json"
EXAMPLES = sorted(ROOT.glob("plans/*.yaml")) + sorted(ROOT.glob("bench/plans/*.yaml"))
class _EditorLoader(yaml.SafeLoader):
    """YAML as editors read it for schema checks: dates stay text (YAML 1.2 has no timestamp type)."""


_EditorLoader.yaml_implicit_resolvers = {
    first: [resolver for resolver in resolvers if resolver[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def test_the_schema_in_the_repository_is_the_one_the_model_generates(capsys):
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == plan_json_schema(), (
        "plans/plan.schema.json is stale; regenerate it with: migrate schema > plans/plan.schema.json"
    )
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == plan_json_schema()
    jsonschema.Draft202012Validator.check_schema(plan_json_schema())


def test_every_field_of_the_schema_is_described():
    schema = plan_json_schema()
    for owner, definition in [("Plan", schema), *schema["$defs"].items()]:
        for name, prop in definition["properties"].items():
            assert prop.get("description"), f"{owner}.{name} has no description"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_plan_names_the_schema_and_validates_against_it(path):
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    found = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first_line)
    assert found, f"{path.name} must start with '# yaml-language-server: $schema=...'"
    assert (path.parent / found.group(1)).resolve() == SCHEMA_FILE
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(yaml.load(path.read_text(), Loader=_EditorLoader))]
    assert errors == []


def _schema_key(error: jsonschema.ValidationError) -> str:
    """The key an editor underlines for `error`, in the loader's `a.b[1].c` spelling."""
    error = jsonschema.exceptions.best_match([error])
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        path.append(re.search(r"'([^']+)'(?:, '[^']+')* (?:was unexpected|were unexpected|does not match)", error.message).group(1))
    elif error.validator == "required":
        path.append(re.match(r"'([^']+)'", error.message).group(1))
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


@pytest.mark.parametrize(
    "extra",
    [
        "  bucket_name: x\n",
        "rulez: []\n",
        "transfer:\n  concurrency: sixteen\n",
        "transfer:\n  concurrency: 0\n",
        "transfer:\n  part_size: 10 parsecs\n",
        "verify:\n  mode: thorough\n",
        "  storage_class: STANDARD_AI\n",
        "  on_conflict: replace\n",
        "filters:\n  skip_placeholders: maybe\n",
        "filters:\n  exclude: {a: b}\n",
        "tiering:\n  - min_size: 1GiB\n",
        "rules:\n  - name: a\n    match: 'a/{x}'\n    to: 'b/{x}'\n    contnet_type: text/plain\n",
        "rules:\n  - name: a\n    match: 'a/{x}'\n    to: 'b/{x}'\n    exclude: sometimes\n",
        "costs:\n  put_per_1000: -1\n",
        # Python attribute names are not plan keys: the file spells `bucket:` and `sample:` as the schema does.
        "rules:\n  - name: a\n    match: 'a/{x}'\n    to: 'b/{x}'\n    buckets: plugins\n",
        "verify:\n  sample_size: 3\n",
    ],
)
def test_an_editor_and_migrate_plan_point_at_the_same_key(extra):
    text = MINIMAL + extra
    with pytest.raises(PlanError) as info:
        parse_plan(text, source_name="plans/x.yaml", environ=ENV)
    editor = [_schema_key(e) for e in _validator().iter_errors(yaml.load(text, Loader=_EditorLoader))]
    assert editor == [info.value.key]


def test_an_optional_key_left_empty_is_fine_for_both():
    text = MINIMAL + "  region:\n  storage_class: ~\nrules:\nfilters:\n  include:\ntransfer: {concurrency: null}\n"
    plan = parse_plan(text, source_name="plans/x.yaml", environ=ENV)
    assert (plan.destination.region, plan.rules, plan.transfer.concurrency) == (None, (), 16)
    assert list(_validator().iter_errors(yaml.load(text, Loader=_EditorLoader))) == []
