"""The Supabase Storage REST API, route by route (served under `/storage/v1`).

Each handler cites the real route in github.com/supabase/storage it mirrors.
Handlers take a `Request` and return a `Response`; the transport (app.py)
owns sockets, keep-alive and fault injection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from migrate.stack.supabase_server import errors, listing, rendering
from migrate.stack.supabase_server.auth import (
    Gatekeeper,
    GatewayRejected,
    Principal,
    TokenRejected,
)
from migrate.stack.supabase_server.blobs import BlobStore
from migrate.stack.supabase_server.catalog import Bucket, Catalog, StoredObject
from migrate.stack.supabase_server.errors import StorageError
from migrate.stack.supabase_server.faults import FaultInjector, InvalidFaultRule, rules_from_json
from migrate.stack.supabase_server.keys import DEFAULT_S3_REGION, project_keys
from migrate.stack.supabase_server.s3 import S3Api
from migrate.stack.supabase_server.signed import SignedUrlRoutes
from migrate.stack.supabase_server.uploads import Uploader, js_iso_now
from migrate.stack.supabase_server.validation import (
    as_bool,
    as_count,
    as_positive,
    as_str,
    is_valid_bucket_name,
    is_valid_key,
    mime_list,
    object_body,
    optional,
    parse_file_size_limit,
    required,
    sort_by_option,
    user_metadata_header,
)
from migrate.stack.supabase_server.wire import (
    Request,
    Response,
    error_response,
    json_response,
)

def _route(pattern: str) -> re.Pattern[str]:
    # DOTALL: keys may contain newlines (limits.ts allows them).
    return re.compile(pattern, re.DOTALL)


@dataclass
class Transfer:
    """The body of /object/move and /object/copy (moveObject.ts, copyObject.ts)."""

    bucket_id: str
    source_key: str
    destination_bucket: str
    destination_key: str
    body: dict[str, Any]


Handler = Callable[[Request], Response]


class StorageApi:
    """The routes (bytes are taken in by `uploads.Uploader`). Stateless apart from the catalog, the blob store and the fault rules."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        blobs: BlobStore,
        faults: FaultInjector,
        jwt_secret: str,
        file_size_limit: int,
        s3_region: str = DEFAULT_S3_REGION,
    ):
        self.catalog = catalog
        self.blobs = blobs
        self.faults = faults
        self.jwt_secret = jwt_secret
        self.file_size_limit = file_size_limit
        self.gatekeeper = Gatekeeper(jwt_secret)
        self.uploads = Uploader(catalog=catalog, blobs=blobs, file_size_limit=file_size_limit, bucket=self._bucket)
        keys = project_keys(jwt_secret)
        self.s3 = S3Api(self, access_key_id=keys.s3_access_key_id, secret_access_key=keys.s3_secret_access_key, region=s3_region)
        signed = SignedUrlRoutes(self)
        # Static paths before parametric ones, as Fastify's router prefers them.
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("GET", _route(r"/status"), self.status),
            ("GET", _route(r"/_faults"), self.faults_show),
            ("POST", _route(r"/_faults"), self.faults_add),
            ("DELETE", _route(r"/_faults"), self.faults_clear),
            ("GET", _route(r"/bucket/?"), self.list_buckets),
            ("POST", _route(r"/bucket/?"), self.create_bucket),
            ("POST", _route(r"/bucket/(?P<bucket>[^/]+)/empty"), self.empty_bucket),
            ("GET", _route(r"/bucket/(?P<bucket>[^/]+)"), self.get_bucket),
            ("PUT", _route(r"/bucket/(?P<bucket>[^/]+)"), self.update_bucket),
            ("DELETE", _route(r"/bucket/(?P<bucket>[^/]+)"), self.delete_bucket),
            ("POST", _route(r"/object/move"), self.move_object),
            ("POST", _route(r"/object/copy"), self.copy_object),
            ("POST", _route(r"/object/list/(?P<bucket>[^/]+)"), self.list_v1),
            ("POST", _route(r"/object/list-v2/(?P<bucket>[^/]+)"), self.list_v2),
            ("POST", _route(r"/object/sign/(?P<bucket>[^/]+)/?"), signed.sign_urls),
            ("POST", _route(r"/object/sign/(?P<bucket>[^/]+)/(?P<key>.+)"), signed.sign_url),
            ("GET", _route(r"/object/sign/(?P<bucket>[^/]+)/(?P<key>.+)"), signed.get_signed_object),
            # Before /object/{bucket}/{key}: otherwise "upload" would be taken as a bucket name.
            ("POST", _route(r"/object/upload/sign/(?P<bucket>[^/]+)/(?P<key>.+)"), signed.sign_upload_url),
            ("PUT", _route(r"/object/upload/sign/(?P<bucket>[^/]+)/(?P<key>.+)"), signed.upload_signed),
            ("GET", _route(r"/object/info/(?P<variant>authenticated|public)/(?P<bucket>[^/]+)/(?P<key>.+)"), self.object_info),
            ("GET", _route(r"/object/info/(?P<bucket>[^/]+)/(?P<key>.+)"), self.object_info),
            ("GET", _route(r"/object/(?P<variant>authenticated|public)/(?P<bucket>[^/]+)/(?P<key>.+)"), self.get_object),
            ("HEAD", _route(r"/object/(?P<variant>authenticated|public)/(?P<bucket>[^/]+)/(?P<key>.+)"), self.get_object),
            ("GET", _route(r"/object/(?P<bucket>[^/]+)/(?P<key>.+)"), self.get_object),
            ("HEAD", _route(r"/object/(?P<bucket>[^/]+)/(?P<key>.+)"), self.get_object),
            ("POST", _route(r"/object/(?P<bucket>[^/]+)/(?P<key>.+)"), self.upload_object),
            ("PUT", _route(r"/object/(?P<bucket>[^/]+)/(?P<key>.+)"), self.upload_object),
            ("DELETE", _route(r"/object/(?P<bucket>[^/]+)/?"), self.delete_objects),
            ("DELETE", _route(r"/object/(?P<bucket>[^/]+)/(?P<key>.+)"), self.delete_object),
        ]

    def handle(self, request: Request) -> Response:
        """Route the request; storage errors become their real error answers."""
        for method, pattern, handler in self._routes:
            if method != request.method:
                continue
            match = pattern.fullmatch(request.path)
            if match:
                request.params = {name: value for name, value in match.groupdict().items() if value is not None}
                try:
                    return handler(request)
                except StorageError as err:
                    return error_response(err)
        return error_response(errors.route_not_found(request.method, request.target or request.path))

    # -- auth -----------------------------------------------------------------------

    def principal(self, request: Request, *, anonymous_ok: bool = False) -> Principal:
        """jwt.ts: verify the request's JWT; on `allowInvalidJwt` routes fall back to anon."""
        try:
            return self.gatekeeper.principal(request.headers, anonymous_ok=anonymous_ok, apikey_param=request.arg("apikey"))
        except TokenRejected as err:
            raise errors.access_denied(str(err)) from err
        except GatewayRejected as err:
            raise errors.gateway_rejected(err.message, err.hint) from err

    def _bucket(self, bucket_id: str) -> Bucket:
        bucket = self.catalog.get_bucket(bucket_id)
        if bucket is None:
            raise errors.no_such_bucket()
        return bucket

    @staticmethod
    def _valid_key(key: str) -> str:
        if not is_valid_key(key):
            raise errors.invalid_key(key)
        return key

    # -- health and faults ---------------------------------------------------------------

    def status(self, request: Request) -> Response:
        """The health check (src/http/routes/health): 200, empty body."""
        return Response(200)

    def _require_service_role(self, request: Request) -> None:
        # Not a Supabase route: the fault switchboard of this test server.
        if not self.principal(request).bypasses_rls:
            raise errors.access_denied("Access denied")

    def faults_show(self, request: Request) -> Response:
        """GET /_faults: the rules and their remaining counts."""
        self._require_service_role(request)
        return json_response({"rules": self.faults.snapshot()})

    def faults_add(self, request: Request) -> Response:
        """POST /_faults: append rules ({"rules": [...]})."""
        self._require_service_role(request)
        try:
            rules = rules_from_json(request.json())
        except InvalidFaultRule as err:
            raise errors.validation_error(str(err)) from err
        self.faults.add(rules)
        return json_response({"rules": self.faults.snapshot()})

    def faults_clear(self, request: Request) -> Response:
        """DELETE /_faults: remove every rule."""
        self._require_service_role(request)
        self.faults.clear()
        return json_response({"rules": []})

    # -- buckets (src/http/routes/bucket/) ---------------------------------------------------

    def list_buckets(self, request: Request) -> Response:
        """GET /bucket (getAllBuckets.ts); RLS hides every row from non-service roles."""
        principal = self.principal(request)
        buckets = self.catalog.list_buckets() if principal.bypasses_rls else []
        # getAllBuckets.ts selects `type` too (getBucket.ts does not): the recorded answers.
        return json_response([{**bucket.to_json(), "type": bucket.type} for bucket in buckets])

    def get_bucket(self, request: Request) -> Response:
        """GET /bucket/{id} (getBucket.ts)."""
        principal = self.principal(request)
        bucket = self.catalog.get_bucket(request.params["bucket"])
        if bucket is None or not principal.bypasses_rls:
            raise errors.no_such_bucket()
        return json_response(bucket.to_json())

    def create_bucket(self, request: Request) -> Response:
        """POST /bucket (createBucket.ts): answers {"name": name}; the id defaults to the name."""
        principal = self.principal(request)
        body = object_body(request.json())
        name = as_str(required(body, "name"), "name")
        bucket_id = optional(body, "id", as_str, "") or name
        if not is_valid_bucket_name(bucket_id) or not is_valid_bucket_name(name):
            raise errors.invalid_bucket_name()
        public = optional(body, "public", as_bool, False)
        file_size_limit = parse_file_size_limit(body.get("file_size_limit"))
        allowed = mime_list(body.get("allowed_mime_types"))
        if not principal.bypasses_rls:
            raise errors.rls_denied()
        self.catalog.create_bucket(
            bucket_id=bucket_id,
            name=name,
            owner=principal.owner,
            public=public,
            file_size_limit=file_size_limit,
            allowed_mime_types=allowed,
        )
        return json_response({"name": name})

    def update_bucket(self, request: Request) -> Response:
        """PUT /bucket/{id} (updateBucket.ts): {"message": "Successfully updated"}."""
        principal = self.principal(request)
        body = object_body(request.json())
        changes: dict[str, Any] = {}
        if body.get("public") is not None:
            changes["public"] = as_bool(body["public"], "public")
        if "file_size_limit" in body:
            changes["file_size_limit"] = parse_file_size_limit(body["file_size_limit"])
        if "allowed_mime_types" in body:
            changes["allowed_mime_types"] = mime_list(body["allowed_mime_types"])
        if not principal.bypasses_rls or not self.catalog.update_bucket(request.params["bucket"], changes):
            raise errors.no_such_bucket()
        return json_response({"message": "Successfully updated"})

    def empty_bucket(self, request: Request) -> Response:
        """POST /bucket/{id}/empty (emptyBucket.ts): {"message": "Successfully emptied"}."""
        principal = self.principal(request)
        request.json()
        bucket_id = request.params["bucket"]
        if not principal.bypasses_rls:
            raise errors.no_such_bucket()
        self._bucket(bucket_id)
        for version in self.catalog.empty_bucket(bucket_id):
            self.blobs.delete(version)
        return json_response({"message": "Successfully emptied"})

    def delete_bucket(self, request: Request) -> Response:
        """DELETE /bucket/{id} (deleteBucket.ts); a non-empty bucket is ResourceNotEmpty."""
        principal = self.principal(request)
        request.json()
        if not principal.bypasses_rls or not self.catalog.delete_bucket(request.params["bucket"]):
            raise errors.no_such_bucket()
        return json_response({"message": "Successfully deleted"})

    # -- uploads (createObject.ts, updateObject.ts) ---------------------------------------

    def upload_object(self, request: Request) -> Response:
        """POST (createObject.ts) and PUT (updateObject.ts) /object/{bucket}/{key}."""
        principal = self.principal(request)
        bucket_id, key = request.params["bucket"], request.params["key"]
        # updateObject.ts (PUT) always upserts; createObject.ts (POST) only with x-upsert: true.
        upsert = request.method == "PUT" or request.header("x-upsert") == "true"
        self._valid_key(key)
        self._bucket(bucket_id)
        if not principal.bypasses_rls:
            raise errors.rls_denied()
        obj = self.uploads.upload(request, bucket_id=bucket_id, key=key, owner=principal.owner, upsert=upsert)
        return json_response({"Id": obj.id, "Key": f"{bucket_id}/{key}"})

    # -- delete, move, copy ------------------------------------------------------------------

    def delete_objects(self, request: Request) -> Response:
        """DELETE /object/{bucket} {"prefixes": [...]} (deleteObjects.ts): the deleted rows."""
        principal = self.principal(request)
        body = object_body(request.json())
        prefixes = required(body, "prefixes")
        if not isinstance(prefixes, list) or not all(isinstance(item, str) for item in prefixes):
            raise errors.validation_error("body/prefixes must be array")
        if not prefixes:
            raise errors.validation_error("body/prefixes must NOT have fewer than 1 items")
        if not principal.bypasses_rls:
            return json_response([])
        removed = self.catalog.delete_objects(request.params["bucket"], prefixes)
        for obj in removed:
            self.blobs.delete(obj.version)
        return json_response([obj.to_json() for obj in removed])

    def delete_object(self, request: Request) -> Response:
        """DELETE /object/{bucket}/{key} (deleteObject.ts): {"message": "Successfully deleted"}."""
        principal = self.principal(request)
        key = self._valid_key(request.params["key"])
        removed = self.catalog.delete_objects(request.params["bucket"], [key]) if principal.bypasses_rls else []
        if not removed:
            raise errors.no_such_key()
        self.blobs.delete(removed[0].version)
        return json_response({"message": "Successfully deleted"})

    def _transfer(self, request: Request) -> Transfer:
        body = object_body(request.json())
        bucket_id = as_str(required(body, "bucketId"), "bucketId")
        return Transfer(
            bucket_id=bucket_id,
            source_key=as_str(required(body, "sourceKey"), "sourceKey"),
            destination_bucket=optional(body, "destinationBucket", as_str, "") or bucket_id,
            destination_key=self._valid_key(as_str(required(body, "destinationKey"), "destinationKey")),
            body=body,
        )

    def _readable_source(self, principal: Principal, bucket_id: str, key: str) -> StoredObject:
        source = self.catalog.find_object(bucket_id, key) if principal.bypasses_rls else None
        if source is None:
            raise errors.no_such_key()
        return source

    def move_object(self, request: Request) -> Response:
        """POST /object/move (moveObject.ts): {"message": "Successfully moved"}.

        A taken destination is ResourceAlreadyExists (a unique violation on rename).
        """
        principal = self.principal(request)
        move = self._transfer(request)
        self._readable_source(principal, move.bucket_id, move.source_key)
        if (move.bucket_id, move.source_key) != (move.destination_bucket, move.destination_key):
            self._bucket(move.destination_bucket)
            moved = self.catalog.rename_object(
                move.bucket_id, move.source_key, to_bucket=move.destination_bucket, to_name=move.destination_key
            )
            if moved is None:
                raise errors.no_such_key()
        return json_response({"message": "Successfully moved"})

    def copy_object(self, request: Request) -> Response:
        """POST /object/copy (copyObject.ts): {"Id", "Key": "<bucket>/<key>", ...the new row}.

        Metadata and user metadata are copied unless `copyMetadata` is false; then
        `metadata` (cacheControl, mimetype) and the `x-metadata` header apply.
        """
        principal = self.principal(request)
        copy = self._transfer(request)
        source = self._readable_source(principal, copy.bucket_id, copy.source_key)
        self._bucket(copy.destination_bucket)
        upsert = request.header("x-upsert") == "true"
        if not upsert and self.catalog.object_exists(copy.destination_bucket, copy.destination_key):
            raise errors.key_already_exists()
        metadata = dict(source.metadata)
        user_metadata = source.user_metadata
        if not optional(copy.body, "copyMetadata", as_bool, True):
            overrides = copy.body.get("metadata") or {}
            if isinstance(overrides, dict):
                metadata.update({k: v for k, v in overrides.items() if k in ("cacheControl", "mimetype") and v})
            user_metadata = user_metadata_header(request.header("x-metadata"))
        metadata["lastModified"] = js_iso_now()
        version = self.blobs.clone(source.version)
        obj = self.uploads.save_row(
            bucket_id=copy.destination_bucket,
            key=copy.destination_key,
            owner=principal.owner,
            version=version,
            metadata=metadata,
            user_metadata=user_metadata,
            upsert=upsert,
        )
        return json_response({"Id": obj.id, "Key": f"{copy.destination_bucket}/{copy.destination_key}", **obj.to_json()})

    # -- listing ------------------------------------------------------------------------

    def list_v1(self, request: Request) -> Response:
        """POST /object/list/{bucket} (listObjects.ts -> object.ts searchObjects -> storage.search)."""
        principal = self.principal(request)
        body = object_body(request.json())
        prefix = as_str(required(body, "prefix"), "prefix")
        limit = optional(body, "limit", as_positive, 100)
        offset = optional(body, "offset", as_count, 0)
        search = optional(body, "search", as_str, "")
        column, order = sort_by_option(body, ("name", "updated_at", "created_at", "last_accessed_at"))
        if not principal.bypasses_rls:
            return json_response([])
        with self.catalog.pool.connection() as conn:
            rows = listing.search_v1(
                conn,
                bucket_id=request.params["bucket"],
                prefix=prefix,
                limit=limit,
                offset=offset,
                search=search,
                sort_column=column or "name",
                sort_order=order or "asc",
            )
        return json_response(rows)

    def list_v2(self, request: Request) -> Response:
        """POST /object/list-v2/{bucket} (listObjectsV2.ts -> object.ts listObjectsV2)."""
        principal = self.principal(request)
        body = object_body(request.json())
        prefix = optional(body, "prefix", as_str, "")
        limit: int | None = optional(body, "limit", as_positive, None)
        cursor = optional(body, "cursor", as_str, "") or None
        with_delimiter = optional(body, "with_delimiter", as_bool, False)
        column, order = sort_by_option(body, ("name", "updated_at", "created_at"))
        if not principal.bypasses_rls:
            return json_response({"hasNext": False, "folders": [], "objects": []})
        with self.catalog.pool.connection() as conn:
            result = listing.list_v2(
                conn,
                bucket_id=request.params["bucket"],
                prefix=prefix,
                limit=limit,
                cursor_token=cursor,
                with_delimiter=with_delimiter,
                sort_column=column,
                sort_order=order,
            )
        return json_response(result)

    # -- reading objects (getObject.ts, getPublicObject.ts, getObjectInfo.ts) ---------------

    def _readable_object(self, request: Request) -> StoredObject:
        """Find the object the way the route variant does, bucket visibility and RLS included."""
        variant = request.params.get("variant", "default")
        bucket_id, key = request.params["bucket"], request.params["key"]
        bucket = self.catalog.get_bucket(bucket_id)
        if variant == "public":
            # getPublicObject.ts: findBucket(..., {isPublic: true}); no JWT involved.
            if bucket is None or not bucket.public:
                raise errors.no_such_bucket()
            superuser = True
        else:
            # "authenticated" requires a valid JWT; the bare route (allowInvalidJwt)
            # treats a missing or bad one as anonymous, which only sees public buckets.
            principal = self.principal(request, anonymous_ok=variant == "default")
            if bucket is None or (not principal.authenticated and not bucket.public):
                raise errors.no_such_bucket()
            superuser = bucket.public or principal.bypasses_rls
        self._valid_key(key)
        obj = self.catalog.find_object(bucket_id, key) if superuser else None
        if obj is None:
            raise errors.no_such_key()
        return obj

    def get_object(self, request: Request) -> Response:
        """GET/HEAD /object/[authenticated/|public/]{bucket}/{key} (getObject.ts, getPublicObject.ts, getObjectInfo.ts)."""
        obj = self._readable_object(request)
        if request.method == "HEAD":
            return rendering.render_head(request, obj)
        return self._render_asset(request, obj)

    def object_info(self, request: Request) -> Response:
        """GET /object/info/[authenticated/|public/]{bucket}/{key} (getObjectInfo.ts)."""
        return rendering.render_info(self._readable_object(request))

    def _render_asset(self, request: Request, obj: StoredObject, *, expires: str | None = None) -> Response:
        return rendering.render_asset(request, obj, self.blobs.path_for(obj.version), expires=expires)
