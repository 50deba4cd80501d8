"""Key rewriting, destination key checks, collisions and record building: pure, no network."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from migrate.plan import Rule, RuleMetadata, load_plan, parse_plan
from migrate.records import Action, ObjectRecord, records_to_frame
from migrate.rewrite import (
    TemplateError,
    compile_match_template,
    compile_plan,
    compile_rules,
    compile_to_template,
    find_collisions,
    guess_content_type,
    mark_collisions,
    resolve_content_type,
)
from migrate.stores.base import ObjectInfo

PLANS = Path(__file__).resolve().parent.parent / "plans"
DEMO_ENV = {
    "SUPABASE_URL": "http://127.0.0.1:54321",
    "SUPABASE_SERVICE_ROLE_KEY": "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJlLXZhbHVl",
    "SUPABASE_SECRET_KEY": "sb_secret_demo-key-for-the-example-plans",  # plans/*.yaml read the secret key variable
}


def rule(name: str, match: str | None, to: str | None, **kwargs) -> Rule:
    return Rule(name=name, match=match, to=to, **kwargs)


def dest(rewriter, bucket: str, key: str) -> str | None:
    return rewriter.rewrite(bucket, key).dest_key


# --------------------------------------------------------------------------- templates


def test_single_segment_placeholders_capture_one_segment_each():
    rw = compile_rules([rule("r", "plugins/{name}/index.json", "registry/{name}/index.json")])
    assert dest(rw, "b", "plugins/ocr/index.json") == "registry/ocr/index.json"
    # {name} never spans a '/': this key has two segments where one is expected.
    result = rw.rewrite("b", "plugins/a/b/index.json")
    assert result.rule is None and result.dest_key == "plugins/a/b/index.json"


def test_multi_segment_placeholder_takes_one_or_more_segments():
    rw = compile_rules([rule("r", "plugins/{name}/{version}/{file**}", "registry/{name}/v{version}/{file}")])
    assert dest(rw, "b", "plugins/ocr/1.2.0/ocr.tar.gz") == "registry/ocr/v1.2.0/ocr.tar.gz"
    assert dest(rw, "b", "plugins/ocr/1.2.0/docs/en/readme.md") == "registry/ocr/v1.2.0/docs/en/readme.md"
    # One or more: nothing after the version folder means no match.
    assert compile_rules([rule("r", "a/{rest**}", "x/{rest}")]).rewrite("b", "a/").rule is None


def test_multi_segment_placeholder_never_matches_an_empty_segment():
    rw = compile_rules([rule("r", "a/{rest**}", "x/{rest}")], unmatched="exclude")
    assert rw.rewrite("b", "a/x//y").rule is None
    assert rw.rewrite("b", "a/x/y").dest_key == "x/x/y"


def test_literal_text_must_match_exactly_including_inside_a_segment():
    rw = compile_rules([rule("r", "releases/v{version}.zip", "zips/{version}.zip")], unmatched="exclude")
    assert dest(rw, "b", "releases/v2.0.zip") == "zips/2.0.zip"
    assert rw.rewrite("b", "releases/2.0.zip").dest_key is None
    assert rw.rewrite("b", "releases/v2.0.zipx").dest_key is None
    assert rw.rewrite("b", "Releases/v2.0.zip").dest_key is None  # case-sensitive
    # Regex metacharacters in literal text are literal.
    rw = compile_rules([rule("r", "a.b/(x)+{n}", "{n}")], unmatched="exclude")
    assert dest(rw, "b", "a.b/(x)+7") == "7"
    assert rw.rewrite("b", "aXb/(x)+7").dest_key is None


def test_bucket_is_available_in_to():
    rw = compile_rules([rule("r", "{path**}", "{bucket}/{path}")])
    assert dest(rw, "avatars", "u1/avatar.png") == "avatars/u1/avatar.png"


def test_multi_placeholder_syntax_is_accepted_in_to():
    rw = compile_rules([rule("r", "a/{rest**}", "b/{rest**}")])
    assert dest(rw, "x", "a/1/2") == "b/1/2"


def test_double_braces_are_literal_braces():
    rw = compile_rules([rule("r", "{{tmpl}}/{name}", "t/{{{name}}}")], unmatched="exclude")
    assert dest(rw, "b", "{tmpl}/x") == "t/{x}"


def test_regex_rule_uses_named_groups_and_must_match_the_whole_key():
    regex = r"plugins/(?P<name>[^/]+)/v?(?P<version>\d+\.\d+\.\d+)/(?P<file>.+)"
    rw = compile_rules([Rule(name="semver", regex=regex, to="r/{name}/{version}/{file}")], unmatched="exclude")
    assert dest(rw, "b", "plugins/ocr/v1.2.3/pkg.zip") == "r/ocr/1.2.3/pkg.zip"
    assert dest(rw, "b", "plugins/ocr/1.2.3/pkg.zip") == "r/ocr/1.2.3/pkg.zip"
    assert rw.rewrite("b", "plugins/ocr/latest/pkg.zip").dest_key is None
    assert rw.rewrite("b", "x/plugins/ocr/1.2.3/pkg.zip").dest_key is None  # fullmatch, not search


def test_regex_group_that_did_not_take_part_inserts_nothing():
    rw = compile_rules([Rule(name="r", regex=r"(?P<stem>[^.]+)(?P<ext>\.[a-z]+)?", to="out/{stem}{ext}")])
    assert dest(rw, "b", "readme") == "out/readme"
    assert dest(rw, "b", "readme.md") == "out/readme.md"


def test_first_matching_rule_wins():
    rw = compile_rules(
        [
            rule("index", "plugins/{name}/index.json", "idx/{name}.json"),
            rule("catch-all", "plugins/{path**}", "all/{path}"),
        ]
    )
    assert rw.rewrite("b", "plugins/ocr/index.json").rule == "index"
    assert rw.rewrite("b", "plugins/ocr/1.0/x").rule == "catch-all"
    swapped = compile_rules(
        [
            rule("catch-all", "plugins/{path**}", "all/{path}"),
            rule("index", "plugins/{name}/index.json", "idx/{name}.json"),
        ]
    )
    assert swapped.rewrite("b", "plugins/ocr/index.json").rule == "catch-all"


def test_unmatched_keep_copies_under_the_same_key():
    rw = compile_rules([rule("r", "a/{x}", "b/{x}")], unmatched="keep")
    result = rw.rewrite("bucket", "other/key.txt")
    assert (result.dest_key, result.rule, result.excluded_reason, result.action) == (
        "other/key.txt",
        None,
        None,
        Action.COPY,
    )


def test_unmatched_exclude_leaves_the_key_out_with_a_reason():
    rw = compile_rules([rule("r", "a/{x}", "b/{x}")], unmatched="exclude")
    result = rw.rewrite("bucket", "other/key.txt")
    assert result.dest_key is None
    assert result.action is Action.EXCLUDED
    assert result.excluded_reason == "no rule matches the key (unmatched: exclude)"


def test_rules_restricted_to_a_bucket_only_see_that_bucket():
    rw = compile_rules(
        [
            rule("avatars", "{user}/{file}", "avatars/{user}/{file}", buckets=("avatars",)),
            rule("docs", "{path**}", "docs/{path}", buckets=("documents", "archive")),
        ],
        unmatched="exclude",
    )
    assert dest(rw, "avatars", "u1/a.png") == "avatars/u1/a.png"
    assert dest(rw, "documents", "u1/a.png") == "docs/u1/a.png"
    assert dest(rw, "archive", "u1/a.png") == "docs/u1/a.png"
    assert rw.rewrite("other", "u1/a.png").dest_key is None


def test_rule_with_exclude_leaves_matching_keys_out():
    rw = compile_rules([Rule(name="drop-scratch", match="scratch/{rest**}", exclude=True)])
    result = rw.rewrite("b", "scratch/a/b.bin")
    assert result.action is Action.EXCLUDED
    assert result.rule == "drop-scratch"
    assert result.excluded_reason == "excluded by rule 'drop-scratch'"
    assert dest(rw, "b", "keep/a") == "keep/a"


@pytest.mark.parametrize(
    "key",
    [
        "u1/my file (1).png",
        "u1/Grüße/日本語/файл.txt",
        "u1/100%+sure#1?a=b&c;d,e",
        "u1/emoji 😀/x",
        "u1/{braces}[brackets]$dollar^caret~tilde`tick'\"q",
        "u1/trailing space /x ",
    ],
)
def test_special_characters_pass_through_unchanged(key):
    rw = compile_rules([rule("r", "u1/{rest**}", "users/u1/{rest}")])
    suffix = key[len("u1/") :]
    result = rw.rewrite("b", key)
    assert result.rule == "r"
    assert result.dest_key == "users/u1/" + suffix
    assert result.invalid_reason is None


def test_destination_prefix_is_prepended_as_a_folder():
    rules = [rule("r", "a/{x}", "b/{x}")]
    assert dest(compile_rules(rules, dest_prefix="migrated"), "s", "a/1") == "migrated/b/1"
    assert dest(compile_rules(rules, dest_prefix="migrated/"), "s", "a/1") == "migrated/b/1"
    assert dest(compile_rules(rules, dest_prefix="migrated/"), "s", "zz") == "migrated/zz"


def test_bucket_prefix_applies_to_kept_unmatched_keys_only():
    rw = compile_rules([rule("r", "a/{x}", "b/{x}")], dest_prefix="p/", bucket_prefix=True)
    assert dest(rw, "avatars", "zz/1") == "p/avatars/zz/1"
    # A rule's `to` is the whole key below the prefix: it says {bucket} if it wants it.
    assert dest(rw, "avatars", "a/1") == "p/b/1"


def test_rewrite_to_a_key_s3_cannot_store_is_invalid_not_copied():
    rw = compile_rules([rule("r", "{a}/{b}", "{a}/x/{b}")])
    result = rw.rewrite("s", "\x01/etc")
    assert result.action is Action.INVALID_KEY
    assert result.dest_key == "\x01/x/etc"
    assert result.invalid_reason == "destination key contains U+0001, which S3 cannot return in an XML listing"
    # Keys S3 stores as they are: rewritten or kept, never refused.
    for key, expected in (("a//b", "a//b"), ("../etc", "../x/etc"), ("/lead", "/lead"), ("trail/", "trail/")):
        result = rw.rewrite("s", key)
        assert (result.action, result.dest_key, result.invalid_reason) == (Action.COPY, expected, None), key


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("a/{a*}", "unknown placeholder syntax '{a*}'; use {name} for one segment or {name**} for several"),
        ("a/{}", "unknown placeholder syntax '{}'; use {name} for one segment or {name**} for several"),
        ("a/{ x }", "unknown placeholder syntax '{ x }'; use {name} for one segment or {name**} for several"),
        ("a/{x", "unclosed '{' at position 2; write {{ for a literal brace"),
        ("a/x}", "unmatched '}' at position 3; write }} for a literal brace"),
        (
            "{a}{b}",
            "placeholders {a} and {b} touch; put literal text (such as '/') between them so the key splits one way only",
        ),
        ("{a}/{a}", "placeholder {a} appears twice; each name captures once"),
        (
            "{bucket}/{x}",
            "{bucket} is reserved: it is the source bucket and always available in 'to'; "
            "restrict a rule to a bucket with bucket: NAME",
        ),
        ("", "empty template; use {path**} to match every key"),
    ],
)
def test_bad_match_templates_are_refused_with_a_reason(template, message):
    with pytest.raises(TemplateError) as info:
        compile_match_template(template)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("x/{nmae}", "{nmae} is not captured by match; available here: {bucket}, {name}"),
        ("/x/{name}", "starts with '/', which gives every key an empty first segment; drop the leading '/'"),
        ("x//{name}", "contains '//', an empty path segment"),
        ("x/../{name}", "has a '..' path segment; S3 clients and file systems resolve it away"),
        ("{name}/./x", "has a '.' path segment; S3 clients and file systems resolve it away"),
    ],
)
def test_bad_to_templates_are_refused_with_a_reason(template, message):
    with pytest.raises(TemplateError) as info:
        compile_to_template(template, ["name"])
    assert str(info.value) == message


def test_compile_rules_refuses_a_bad_template():
    with pytest.raises(TemplateError):
        compile_rules([rule("r", "a/{x*}", "b")])


def test_rewriting_100k_keys_is_fast():
    rw = compile_rules(
        [
            rule("index", "plugins/{name}/index.json", "registry/{name}/index.json"),
            rule("packages", "plugins/{name}/{version}/{file**}", "registry/{name}/v{version}/{file}"),
            Rule(name="semver", regex=r"other/(?P<n>\d+)/(?P<rest>.+)", to="o/{n}/{rest}"),
        ],
        dest_prefix="migrated/",
    )
    keys = [f"plugins/plugin-{i % 500}/{i % 37}.{i % 11}.0/files/pkg-{i}.tar.gz" for i in range(100_000)]
    # A generous bound on CPU time (about 0.4 s here), not a speed figure (bench/ has those):
    # it catches only a pathological slowdown such as recompiling patterns per key.
    started = time.process_time()
    results = [rw.rewrite("plugins", k) for k in keys]
    cpu = time.process_time() - started
    assert results[123].dest_key == "migrated/registry/plugin-123/v12.2.0/files/pkg-123.tar.gz"
    assert all(r.rule == "packages" for r in results)
    assert cpu < 20.0, f"100k rewrites took {cpu:.2f}s of CPU"


# --------------------------------------------------------------------------- collisions


def test_find_collisions_lists_every_source_of_a_shared_destination():
    frame = pl.DataFrame(
        {
            "source_bucket": ["avatars", "documents", "avatars", "avatars"],
            "source_key": ["u1/a.png", "u1/a.png", "u2/b.png", "u3/c.png"],
            "dest_bucket": ["dest", "dest", "dest", "other"],
            "dest_key": ["u1/a.png", "u1/a.png", "u2/b.png", "u1/a.png"],
            "size": [1, 2, 3, 4],
        }
    )
    collided = find_collisions(frame)
    assert collided.columns == ["source_bucket", "source_key", "dest_bucket", "dest_key", "colliding_sources"]
    assert collided.rows() == [
        ("avatars", "u1/a.png", "dest", "u1/a.png", ["avatars/u1/a.png", "documents/u1/a.png"]),
        ("documents", "u1/a.png", "dest", "u1/a.png", ["avatars/u1/a.png", "documents/u1/a.png"]),
    ]


def test_find_collisions_accepts_tuples_and_ignores_rows_without_a_destination():
    collided = find_collisions(
        [
            ("b", "x/1", "d", "k"),
            ("b", "y/1", "d", "k"),
            ("b", "z/1", "d", "k"),
            ("b", "gone", "d", None),
            ("b", "gone2", "d", None),
        ]
    )
    assert collided.height == 3
    assert collided["colliding_sources"][0].to_list() == ["b/x/1", "b/y/1", "b/z/1"]


def test_find_collisions_of_distinct_keys_is_empty():
    assert find_collisions([("b", "1", "d", "1"), ("b", "2", "d", "2")]).height == 0


def test_rules_that_fold_keys_together_are_found_as_collisions():
    rw = compile_rules([rule("flatten", "{user}/{file}", "all/{file}")])
    rows = [("avatars", k, "dest", rw.rewrite("avatars", k).dest_key) for k in ("u1/avatar.png", "u2/avatar.png")]
    collided = find_collisions(rows)
    assert collided["colliding_sources"].to_list() == [["avatars/u1/avatar.png", "avatars/u2/avatar.png"]] * 2


def test_mark_collisions_marks_copy_rows_only_and_keeps_order():
    records = [
        ObjectRecord(source_bucket="a", source_key="k1", size=1, dest_bucket="d", dest_key="same"),
        ObjectRecord(source_bucket="a", source_key="k2", size=1, dest_bucket="d", dest_key="unique"),
        ObjectRecord(source_bucket="b", source_key="k1", size=1, dest_bucket="d", dest_key="same"),
        ObjectRecord(
            source_bucket="c", source_key="k9", size=1, dest_bucket="d", dest_key="same", action=Action.EXCLUDED.value
        ),
    ]
    marked = mark_collisions(records_to_frame(records))
    assert marked.columns == records_to_frame(records).columns
    assert marked["source_key"].to_list() == ["k1", "k2", "k1", "k9"]
    assert marked["action"].to_list() == ["collision", "copy", "collision", "excluded"]
    assert marked["reason"][0] == (
        "2 source objects rewrite to s3://d/same: a/k1, b/k1; add a rule or exclude one of them"
    )
    assert marked["reason"][1] is None


# --------------------------------------------------------------------------- headers and records


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("a/b.png", "image/png"),
        ("a/B.PNG", "image/png"),
        ("a/b.json", "application/json"),
        ("a/b.webp", "image/webp"),
        ("a/b.woff2", "font/woff2"),
        ("a/b.tar.gz", "application/gzip"),
        ("a/b.tgz", "application/gzip"),
        ("a/b.whl", "application/zip"),
        ("a/b.unknownext", None),
        ("a/noext", None),
    ],
)
def test_guess_content_type_uses_a_fixed_table(key, expected):
    assert guess_content_type(key) == expected


def test_resolve_content_type():
    assert resolve_content_type(None, "x.png", "application/octet-stream") == "application/octet-stream"
    assert resolve_content_type("infer", "x.png", "application/octet-stream") == "image/png"
    assert resolve_content_type("infer", "x.weird", "text/x-weird") == "text/x-weird"
    assert resolve_content_type("application/json", "x.png", "image/png") == "application/json"


def _info(key: str, size: int = 10, **kwargs) -> ObjectInfo:
    return ObjectInfo(key=key, size=size, etag="abc", **kwargs)


def test_record_builder_applies_filters_rules_headers_and_storage_class():
    plan = parse_plan(
        """
version: 1
source: {type: supabase, url: "${SUPABASE_URL}", key: "${SUPABASE_SERVICE_ROLE_KEY}", buckets: [docs]}
destination: {bucket: dest-bucket, prefix: migrated, storage_class: STANDARD}
rules:
  - name: reports
    match: "reports/{year}/{file}"
    to: "r/{year}/{file}"
    content_type: infer
    cache_control: "private, max-age=60"
    storage_class: STANDARD_IA
    metadata: {origin: supabase}
filters:
  exclude: ["**/*.tmp"]
tiering:
  - {name: big, min_size: 1MiB, storage_class: GLACIER_IR}
""",
        source_name="t.yaml",
        environ=DEMO_ENV,
    )
    builder = compile_plan(plan)
    copied = builder.build(
        "docs",
        _info(
            "reports/2024/q1.pdf",
            content_type="application/octet-stream",
            cache_control="no-cache",
            user_metadata={"owner": "u1", "origin": "old"},
        ),
    )
    assert copied.action == "copy"
    assert copied.dest_bucket == "dest-bucket"
    assert copied.dest_key == "migrated/r/2024/q1.pdf"
    assert copied.rule == "reports"
    assert copied.content_type == "application/pdf"
    assert copied.cache_control == "private, max-age=60"
    assert copied.user_metadata == {"owner": "u1", "origin": "supabase"}
    assert copied.storage_class == "STANDARD_IA"  # the rule beats the destination default
    assert copied.source_etag == "abc"

    big = builder.build("docs", _info("reports/2024/huge.bin", size=2 << 20))
    assert big.storage_class == "GLACIER_IR"  # a tier beats the rule

    other = builder.build("docs", _info("misc/readme.txt", content_type="text/plain", cache_control="no-cache"))
    assert (other.dest_key, other.rule, other.storage_class) == ("migrated/misc/readme.txt", None, "STANDARD")
    assert (other.content_type, other.cache_control) == ("text/plain", "no-cache")

    skipped = builder.build("docs", _info("reports/2024/draft.tmp"))
    assert (skipped.action, skipped.dest_key) == ("excluded", None)
    assert skipped.reason == "matches filters.exclude glob '**/*.tmp'"

    placeholder = builder.build("docs", _info("reports/.emptyFolderPlaceholder", size=0))
    assert placeholder.action == "excluded"


def test_plugin_registry_example_rewrites_the_seeded_layout():
    plan = load_plan(PLANS / "plugin-registry.yaml", environ=DEMO_ENV)
    builder = compile_plan(plan)
    modified = datetime(2024, 5, 1, tzinfo=timezone.utc)

    def build(key: str, **kwargs):
        return builder.build("plugins", _info(key, last_modified=modified, **kwargs))

    index = build("plugins/ocr/index.json", content_type="text/plain")
    assert index.dest_key == "registry/ocr/index.json"
    assert index.content_type == "application/json"
    assert index.cache_control == "public, max-age=60, must-revalidate"

    package = build("plugins/ocr/1.2.0/ocr-1.2.0.tar.gz", content_type="application/octet-stream")
    assert package.dest_key == "registry/ocr/v1.2.0/ocr-1.2.0.tar.gz"
    assert package.rule == "versioned-packages"
    assert package.content_type == "application/gzip"
    assert package.cache_control == "public, max-age=31536000, immutable"
    assert package.user_metadata == {"migrated-from": "supabase-storage"}

    stray = build("plugins/README.md")
    assert (stray.dest_key, stray.rule, stray.action) == ("plugins/README.md", None, "copy")


def test_app_assets_example_rewrites_both_buckets_into_one():
    plan = load_plan(PLANS / "app-assets.yaml", environ=DEMO_ENV)
    builder = compile_plan(plan)
    avatar = builder.build("avatars", _info("3f2a/avatar.png", content_type="application/octet-stream"))
    assert (avatar.dest_key, avatar.content_type, avatar.cache_control) == (
        "avatars/3f2a/avatar.png",
        "image/png",
        "public, max-age=86400",
    )
    nested = builder.build("avatars", _info("3f2a/old/avatar.png"))
    assert (nested.dest_key, nested.rule) == ("avatars/3f2a/old/avatar.png", None)  # kept, below avatars/
    doc = builder.build(
        "documents",
        _info("team/2023/q4/report.pdf", size=200 << 20, last_modified=datetime(2023, 6, 1, tzinfo=timezone.utc)),
    )
    assert (doc.dest_key, doc.content_disposition, doc.storage_class) == (
        "documents/team/2023/q4/report.pdf",
        "attachment",
        "STANDARD_IA",
    )
    large_new = builder.build(
        "documents", _info("team/big.iso", size=200 << 20, last_modified=datetime(2025, 1, 1, tzinfo=timezone.utc))
    )
    assert large_new.storage_class == "INTELLIGENT_TIERING"
    assert builder.build("documents", _info("team/.emptyFolderPlaceholder", size=0)).action == "excluded"
    assert builder.build("documents", _info("tmp/upload.part")).action == "excluded"


def test_rule_metadata_defaults_leave_source_headers_alone():
    rw = compile_rules([rule("r", "{x**}", "{x}")])
    result = rw.rewrite("b", "a.bin")
    assert result.metadata == RuleMetadata()



def test_a_tier_sets_the_storage_class_the_builder_writes():
    plan = parse_plan(
        """
version: 1
source: {type: supabase, url: "${SUPABASE_URL}", key: "${SUPABASE_SERVICE_ROLE_KEY}", buckets: [docs]}
destination: {bucket: dest-bucket}
tiering:
  - {name: t, min_size: 1, storage_class: GLACIER}
""",
        source_name="t.yaml",
        environ=DEMO_ENV,
    )
    builder = compile_plan(plan)
    assert builder.build("docs", _info("a.bin", size=1)).storage_class == "GLACIER"
    assert builder.build("docs", _info("empty.bin", size=0)).storage_class != "GLACIER"  # below the tier's min_size
