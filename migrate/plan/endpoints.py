"""Where objects come from and where they go: the `source:` and `destination:` sections of a plan.

Part of the plan model (see `migrate.plan.model`): every field's type,
default and description are declared here, once.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from migrate.patterns import validate_destination_prefix
from migrate.plan.values import (
    DatabaseUrl, EnvName, HttpUrl, Invalid, OptText, PlanModel, Say, Text, bucket_name, canonical, check, choice, choice_schema,
    credentials_refused, describe, environ_of, fail, http_url, names, register_secret, secret_reference, shaped, text, typed,
)
from migrate.redact import mask_url_password

STORAGE_CLASSES = (
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "OUTPOSTS",
    "EXPRESS_ONEZONE",
)
StorageClass = choice(*STORAGE_CLASSES)


def _not_nested(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    for index, prefix in enumerate(prefixes):
        outer = next((other for other in prefixes if other != prefix and prefix.startswith(other)), None)
        if outer is not None:
            fail(f"prefix {prefix!r} is inside prefix {outer!r}: both would list the same objects; keep {outer!r}", at=(index,))
    return prefixes


Prefixes = Annotated[names("text", lambda prefix: prefix), AfterValidator(_not_nested)]


def _fold_prefix(data: Any) -> Any:
    """`prefix: x` is the one-prefix spelling of `prefixes: [x]`."""
    if isinstance(data, dict) and "prefix" in data:
        if "prefixes" in data:
            fail("give prefix or prefixes, not both", at=("prefix",))
        data = {("prefixes" if key == "prefix" else key): value for key, value in data.items()}
    return data


# --------------------------------------------------------------------------- source


class BucketSelection(PlanModel):
    """One source bucket, and the key prefixes to list in it."""

    synonyms = ("prefix",)
    name: Annotated[Text, AfterValidator(bucket_name), Say("the bucket's name")] = Field(description="The source bucket's name.")
    prefixes: Prefixes = Field((), description="Key prefixes to list in this bucket (`prefix:` for one); empty: the plan-wide `source.prefixes`.")
    positional = ("name", "prefixes")  # BucketSelection("docs", ("reports/",))
    _fold = model_validator(mode="before")(classmethod(lambda cls, data: _fold_prefix(data)))


def _selections(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str):
        return None if text(value, info).strip().lower() == "all" else [{"name": value}]
    if not isinstance(value, list) or not value:
        fail(f"expected a list of bucket names or 'all', got {describe(value)}" if value != [] else "is an empty list; name buckets or write buckets: all")
    return [{"name": item} if isinstance(item, str) else item for item in value]


def _listed_once(buckets: tuple[BucketSelection, ...] | None) -> Any:
    names = [selection.name for selection in buckets or ()]
    for index, name in enumerate(names):
        if name in names[:index]:
            fail(f"bucket {name!r} is listed twice (first at line {{first}})", at=(index,), lines={"first": (names.index(name),)})
    return buckets


def _names_or_selections(schema: dict[str, Any]) -> None:
    listed = schema["anyOf"][0]  # `all`, one name, or a list of names and {name, prefixes} mappings
    schema["anyOf"] = [{"type": "string"}, {**listed, "items": {"anyOf": [{"type": "string"}, listed["items"]]}}]


class _SourceBase(PlanModel):
    synonyms = ("prefix",)
    buckets: Annotated[tuple[BucketSelection, ...] | None, BeforeValidator(_selections), AfterValidator(_listed_once)] = Field(
        None, json_schema_extra=_names_or_selections, description="`all` (the default: every bucket the credentials see), or names and `{name, prefixes}`."
    )
    prefixes: Prefixes = Field((), description="Key prefixes to list (`prefix:` for one) in buckets that list none of their own; empty: whole buckets.")
    _fold = model_validator(mode="before")(classmethod(lambda cls, data: _fold_prefix(data)))

    @property
    def all_buckets(self) -> bool:
        return self.buckets is None

    @property
    def bucket_names(self) -> tuple[str, ...] | None:
        """The buckets the plan names, or None for all of them."""
        return None if self.buckets is None else tuple(b.name for b in self.buckets)

    def prefixes_for(self, bucket: str) -> tuple[str, ...]:
        """Prefixes to list in `bucket`: its own, else the plan-wide ones, else `("",)` (everything)."""
        own = next((selection.prefixes for selection in self.buckets or () if selection.name == bucket), ())
        return own or self.prefixes or ("",)


def _project_url(url: str) -> str:
    path = re.sub(r"^https?://[^/]+", "", url)
    if path.startswith("/storage/v1/s3"):
        fail("that is the S3 protocol endpoint: use type: s3 with endpoint_url, or give the project URL")
    return url if not path.startswith("/storage/v1") else fail("give the project URL (https://<ref>.supabase.co) without /storage/v1")


class SupabaseSource(_SourceBase):
    """A Supabase project read through its Storage REST API (and optionally its catalog)."""

    kind: ClassVar[str] = "supabase"
    credentials_hint = "write key: ${SUPABASE_SERVICE_ROLE_KEY} and export the variable"
    type: choice("supabase") = Field(description="`supabase`: the Storage REST API of a Supabase project.")  # type: ignore[valid-type]
    url: Annotated[http_url(required=True), AfterValidator(_project_url), Say("the project URL, e.g. url: ${SUPABASE_URL}")] = Field(
        description="The project URL, e.g. `${SUPABASE_URL}` (https://<ref>.supabase.co), without /storage/v1."
    )
    key: Annotated[secret_reference("SUPABASE_SERVICE_ROLE_KEY"), Say("write key: ${SUPABASE_SERVICE_ROLE_KEY} and export SUPABASE_SERVICE_ROLE_KEY")] = Field(
        repr=False, exclude=True, description="The secret key (`sb_secret_...`) or a legacy service-role JWT, only ever as `${VAR}`."
    )
    database_url: DatabaseUrl = Field(
        None, repr=False, exclude=True, description="Optional: inventory from storage.objects at this PostgreSQL URL (a password only through `${...}`)."
    )

    @property
    def database_url_redacted(self) -> str | None:
        """`database_url` with any password replaced by `***`, for messages and reports."""
        return mask_url_password(self.database_url) if self.database_url else None


_REGION = re.compile(r"[a-z0-9-]+")


class _S3Access(PlanModel):
    credentials_hint = "use the AWS credential chain, profile: NAME, or access_key_id_env/secret_access_key_env naming environment variables"
    #: Fields the loader fills from the environment, never from the file.
    resolved: ClassVar[tuple[str, ...]] = ("access_key_id", "secret_access_key", "session_token")
    endpoint_url: HttpUrl = Field(None, description="An S3-compatible endpoint; empty: AWS.")
    region: Annotated[OptText, check(_REGION.fullmatch, "{0!r} is not a region name (such as us-east-1)"), shaped(r"^\s*[a-z0-9-]*\s*$", numbers=True)] = Field(None, description="The region, such as us-east-1.")
    profile: OptText = Field(None, description="A profile from the AWS config files.")
    access_key_id_env: EnvName = Field(None, description="NAME of the environment variable holding the access key id.")
    secret_access_key_env: EnvName = Field(None, description="NAME of the environment variable holding the secret access key.")
    session_token_env: EnvName = Field(None, description="NAME of the environment variable holding a session token.")
    # Resolved from the *_env variables at load time; None: the AWS credential chain.
    access_key_id: SkipJsonSchema[str | None] = Field(None, repr=False, exclude=True, validate_default=True)
    secret_access_key: SkipJsonSchema[str | None] = Field(None, repr=False, exclude=True, validate_default=True)
    session_token: SkipJsonSchema[str | None] = Field(None, repr=False, exclude=True, validate_default=True)

    @field_validator("access_key_id", "secret_access_key", "session_token", mode="before")
    @classmethod
    def _resolve(cls, value: Any, info: ValidationInfo) -> str | None:
        if info.context and value is not None:
            raise credentials_refused(value, cls.credentials_hint)  # written in a plan file
        env_key = f"{info.field_name}_env"
        variable = info.data.get(env_key)
        if value is not None or info.context is None or variable is None:
            return value  # built in code, or no variable named: the AWS credential chain
        resolved = environ_of(info).get(variable)
        if not resolved:
            state = "is not set" if resolved is None else "is empty"
            fail(f"environment variable {variable} {state}; export it, or remove {env_key} to use the AWS credential chain", at=("..", env_key))
        if info.field_name != "access_key_id":
            register_secret(resolved)
        return resolved

    @model_validator(mode="after")
    def _pairs(self) -> Any:
        key_id, secret = self.access_key_id_env, self.secret_access_key_env
        if (key_id is None) != (secret is None):
            missing, present = ("secret_access_key_env", "access_key_id_env") if secret is None else ("access_key_id_env", "secret_access_key_env")
            fail(f"{present} needs {missing} too; give both, or neither to use the AWS credential chain", at=(missing,), line_at=(present,))
        if self.session_token_env is not None and key_id is None:
            fail("session_token_env needs access_key_id_env and secret_access_key_env", at=("session_token_env",))
        if self.profile is not None and key_id is not None:
            fail("use either a profile or access_key_id_env/secret_access_key_env, not both", at=("profile",))
        return self


class S3Source(_S3Access, _SourceBase):
    """Any S3-compatible endpoint, including Supabase's `/storage/v1/s3`."""

    kind: ClassVar[str] = "s3"
    type: choice("s3") = Field(description="`s3`: any S3-compatible endpoint (including Supabase's /storage/v1/s3).")  # type: ignore[valid-type]


def _source_type(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, dict):
        return value if isinstance(value, BaseModel) else fail(f"expected a mapping with type: supabase or type: s3, got {describe(value)}")
    if "type" not in value:
        fail(
            "required key is missing; one of: supabase, s3. supabase reads the Storage REST API; s3 reads any "
            "S3-compatible endpoint (including Supabase's /storage/v1/s3)",
            at=("type",),
        )
    try:
        return {**value, "type": canonical(value["type"], info, ("supabase", "s3")) or fail(f"{value['type']!r} is not one of: supabase, s3")}
    except Invalid as err:
        raise Invalid(str(err), at=("type",)) from None


_SOURCE_KIND = Discriminator(lambda value: value.get("type") if isinstance(value, dict) else getattr(value, "kind", None))
Source = Annotated[Union[Annotated[SupabaseSource, Tag("supabase")], Annotated[S3Source, Tag("s3")]], _SOURCE_KIND, BeforeValidator(_source_type)]


# --------------------------------------------------------------------------- destination


def _prefix(prefix: str | None) -> str:
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    reason = validate_destination_prefix(prefix) if prefix else None
    return (prefix or "") if reason is None else fail(reason)


def _bucket_prefix(value: Any, info: ValidationInfo) -> bool | None:
    if isinstance(value, bool) or value is None:
        return value
    return {"auto": None, "always": True, "never": False}[canonical(value, info, ("auto", "always", "never")) or "auto"]


def _s3_bucket_name(name: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", name)) and ".." not in name


_S3_BUCKET = "{0!r} is not a valid S3 bucket name (3-63 characters: lowercase letters, digits, '.' and '-', starting and ending with a letter or digit)"


Encryption = choice("AES256", "aws:kms")


def sse_pair(model: Any, where: str) -> None:
    """`server_side_encryption: aws:kms` and `kms_key_id` come together (`where`: the section, for the message)."""
    if model.server_side_encryption == "aws:kms" and model.kms_key_id is None:
        fail(f"aws:kms needs {where}kms_key_id (a key id, key ARN or alias/NAME)", at=("server_side_encryption",))
    if model.kms_key_id is not None and model.server_side_encryption != "aws:kms":
        fail("kms_key_id is only used with server_side_encryption: aws:kms", at=("kms_key_id",))


def _folder_path(path: str | None) -> str | None:
    return path if path is None or "\x00" not in path else fail("is not a usable folder path")


class _Store(_S3Access):
    """What a destination and a backup target share: a folder (`type: local`, `path`), or an S3 bucket written with a class and SSE."""

    #: With `type: local`: the keys that apply (every other key given is refused, never ignored), and what the section is.
    folder_keys: ClassVar[tuple[str, ...]]
    folder_what: ClassVar[str]
    folder_example: ClassVar[str]
    #: How messages name the section's keys (`destination.kms_key_id`).
    section: ClassVar[str]
    path: Annotated[OptText, AfterValidator(lambda v: v and v.strip()), AfterValidator(_folder_path)] = Field(
        None, description="With `type: local`: the folder to write into, e.g. /srv/copy."
    )
    storage_class: StorageClass | None = Field(
        None, description="With `type: s3`: storage class of what is written; none: the bucket default (STANDARD on AWS), no header sent."
    )
    server_side_encryption: Encryption | None = Field(None, description="With `type: s3`: server-side encryption.")  # type: ignore[valid-type]
    kms_key_id: OptText = Field(None, description="KMS key id, key ARN or alias/NAME; only with `server_side_encryption: aws:kms`.")

    @model_validator(mode="after")
    def _folder_or_bucket(self) -> Any:
        if self.type == "local":  # type: ignore[attr-defined]
            if self.path is None:
                fail(f"required key is missing; the folder to write into, e.g. path: {self.folder_example}", at=("path",))
            given = [key for key in type(self).model_fields if key not in (*self.folder_keys, *self.resolved) and getattr(self, key) not in (None, "")]
            if given:
                fail(f"does not apply to a local {self.folder_what} (a folder); expected one of: {', '.join(self.folder_keys)}", at=(given[0],))
        elif self.path is not None:
            fail(f"path is only used with type: local (a folder); an S3 {self.folder_what} names a bucket", at=("path",))
        else:
            sse_pair(self, self.section)
        return self


class Destination(_Store):
    """The S3 bucket (or local folder, `type: local`) objects are copied into, and how they are written."""

    folder_keys, folder_what, folder_example = ("bucket", "bucket_prefix", "on_conflict", "path", "prefix", "type"), "destination", "/srv/copy"
    section = "destination."
    type: choice("s3", "local") = Field(  # type: ignore[valid-type]
        "s3", description="`s3` (the default), or `local`: a folder on this machine (`path`), buckets as its subfolders (migrate.stores.local)."
    )
    bucket: Annotated[Text, check(_s3_bucket_name, _S3_BUCKET), shaped(r"^\s*[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\s*$", numbers=True), Say("name the S3 bucket, e.g. bucket: ${MIGRATE_DEST_BUCKET}")] = Field(
        description="The destination S3 bucket."
    )
    prefix: Annotated[OptText, AfterValidator(_prefix)] = Field("", description="Every destination key starts with it (a `/` is added).")
    bucket_prefix: typed(bool | None, _bucket_prefix, choice_schema("auto", "always", "never")) = Field(  # type: ignore[valid-type]
        None, description="Keys no rule maps go below `<source bucket>/`: `auto` (unless the plan names exactly one bucket), `always`, `never`."
    )
    on_conflict: choice("skip", "overwrite", "fail") = Field(  # type: ignore[valid-type]
        "skip", description="An object already at the destination: `skip` (reruns never destroy data), `overwrite`, `fail`."
    )


# --------------------------------------------------------------------------- backup targets

BACKUP_TARGET_TYPES: tuple[str, ...] = ("local", "s3")


class BackupTarget(_Store):
    """One place every snapshot is written to (`migrate backup`): a local folder (`path`) or an S3 bucket (+ `prefix`)."""

    folder_keys, folder_what, folder_example = ("name", "path", "type"), "target", "/var/backups/storage"
    section = "backup.targets[]."
    type: Annotated[choice(*BACKUP_TARGET_TYPES), Say("local writes to a folder, s3 to a bucket")] = Field(  # type: ignore[valid-type]
        description="`local`: a folder on this machine (`path`); `s3`: a bucket (`bucket`, `prefix`, the S3 access keys)."
    )
    bucket: Annotated[OptText, AfterValidator(lambda v: v and v.strip()), check(_s3_bucket_name, _S3_BUCKET)] = Field(
        None, description="With `type: s3`: the bucket snapshots are written to."
    )
    prefix: Annotated[OptText, AfterValidator(_prefix)] = Field("", description="With `type: s3`: the snapshot layout (bodies/, snapshots/) lives below it (a `/` is added).")
    name: OptText = Field(None, validate_default=True, description="Names the target in reports and `--target`; default: `local:<path>` or `s3://<bucket>/<prefix>`.")

    @field_validator("name")
    @classmethod
    def _default_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            return value.strip()
        if info.data.get("type") == "local":
            return f"local:{info.data['path']}" if info.data.get("path") else None
        return f"s3://{info.data['bucket']}/{info.data.get('prefix') or ''}" if info.data.get("bucket") else None

    @model_validator(mode="after")
    def _bucket_given(self) -> "BackupTarget":
        return self if self.type == "local" or self.bucket is not None else fail("required key is missing; the S3 bucket snapshots go to", at=("bucket",))
