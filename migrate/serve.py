"""The redirecting download route: old Supabase object URLs keep working after the switch.

    migrate serve plans/x.yaml            # 127.0.0.1:8787 unless the plan says otherwise

or embedded in an ASGI server / another Starlette app::

    from migrate.serve import create_app
    app = create_app(load_plan("plans/x.yaml"))

Answers `GET`/`HEAD /storage/v1/object/...` and `/storage/v1/render/image/...`
(every form in `migrate.urls.URL_FORMS`):

- objects of public buckets: `301` to their public (CDN) URL, the same one
  `migrate urls` writes (with `?download=`: `302` to a presigned URL carrying
  that Content-Disposition, since a public URL cannot set one);
- objects of private buckets: `302` to a freshly presigned GET (expiry:
  `cutover.presign_expires`; Content-Disposition from `?download=` or the
  object's own), after the same authorization check the old route made
  (`migrate.supabase_access`);
- anything not in the manifest: `404`; refused credentials: the status and
  body the old route gave.

It serves redirects, never bytes, and never logs a token or a signature
(uvicorn's access log is off; our own log line has no query string).

Built on Starlette (served by uvicorn): a small, kept ASGI toolkit with a
real router and test-friendly app objects, no ORM or templating to carry, and
an app that embeds in any ASGI server or mounts under an existing FastAPI or
Starlette application.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from migrate.errors import MigrateError, UserInputError
from migrate.jwks import JwksCache, JwksUnavailable
from migrate.object_index import ObjectIndex
from migrate.redact import register_secret
from migrate.rundir import RunDirectory
from migrate.supabase_access import AccessKeys, AccessRefused, check_access, internal_error, no_such_key
from migrate.urls import STORAGE_PREFIX, URL_FORMS, new_url

if TYPE_CHECKING:
    from migrate.plan import Plan
    from migrate.stores.s3 import S3Store

log = logging.getLogger(__name__)

# Longest prefix first: "/object/public/" must win over "/object/".
_FORMS_BY_PREFIX = sorted(URL_FORMS, key=lambda form: len(form[1]), reverse=True)


def access_keys_from_environment(plan: "Plan", environ: dict[str, str] | None = None) -> AccessKeys:
    """Read the JWT secret and sb_secret_ key from the variables the plan names (`cutover.serve.*_env`); the JWKS from `jwks_url`."""
    env = os.environ if environ is None else environ
    serve = plan.cutover.serve
    label = plan.path or plan.name

    def read(name: str | None, what: str) -> str | None:
        if name is None:
            return None
        value = env.get(name, "")
        if not value:
            raise UserInputError(f"{label}: cutover.serve.{what} names {name}, which is not set; export it (the project's {what[:-4].replace('_', ' ')})")
        register_secret(value)
        return value

    jwt_secret = read(serve.jwt_secret_env, "jwt_secret_env")
    secret_key = read(serve.secret_key_env, "secret_key_env")
    jwks = JwksCache(serve.jwks_url) if serve.jwks_url else None
    return AccessKeys(jwt_secret=jwt_secret, secret_key=secret_key, roles=serve.roles, jwks=jwks)


def content_disposition_for_download(download: str) -> str:
    """renderer.ts handleDownload: `?download=` -> Content-Disposition (encodeURIComponent's safe set)."""
    import urllib.parse

    if download == "":
        return "attachment;"
    encoded = urllib.parse.quote(download, safe="-_.!~*'()")
    return f"attachment; filename={encoded}; filename*=UTF-8''{encoded};"


def parse_old_path(path: str) -> tuple[str, str, str] | None:
    """(form, bucket, key) of a decoded `/storage/v1/...` path, or None when it is no download route."""
    if not path.startswith(STORAGE_PREFIX + "/"):
        return None
    rest = path[len(STORAGE_PREFIX) :]
    for form, prefix in _FORMS_BY_PREFIX:
        if rest.startswith(prefix):
            bucket, slash, key = rest[len(prefix) :].partition("/")
            if bucket and slash and key:
                return form, bucket, key
            return None
    return None


@dataclass
class _Route:
    plan: "Plan"
    index: ObjectIndex
    keys: AccessKeys
    store: "S3Store"

    async def endpoint(self, request: Request) -> Response:
        # The blocking parts (SQLite lookup, signing) are short; run them off the event loop.
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(self.answer, request)

    def answer(self, request: Request) -> Response:
        parsed = parse_old_path(request.url.path)
        if parsed is None:
            return JSONResponse({"statusCode": "404", "error": "Not Found", "message": "Route not found"}, status_code=404)
        form, bucket, key = parsed
        public = bucket in self.plan.cutover.public_buckets
        try:
            check_access(
                form=form,
                bucket=bucket,
                key=key,
                public=public,
                headers=request.headers,
                query=request.query_params,
                keys=self.keys,
            )
            self.index.refresh_if_changed()
            obj = self.index.lookup(bucket, key)
            if obj is None:
                raise no_such_key(http_status=404)
        except AccessRefused as refused:
            log.info("%s %s/%s -> %d %s", request.method, bucket, key, refused.http_status, refused.code)
            return JSONResponse(refused.body(), status_code=refused.http_status)
        except JwksUnavailable as err:
            # This request needed a signing key we cannot fetch now: it fails, the route stays up.
            log.warning("%s %s/%s -> 500: %s", request.method, bucket, key, err)
            return JSONResponse(internal_error().body(), status_code=500)
        download = request.query_params.get("download")
        if public and download is None:
            log.info("%s %s/%s -> 301", request.method, bucket, key)
            return RedirectResponse(new_url(self.plan, obj.dest_bucket, obj.dest_key, public=True), status_code=301)
        try:
            from migrate.stores.s3_cutover import presigned_get_url

            # `?download=` wins; otherwise the object's own Content-Disposition is kept.
            disposition = content_disposition_for_download(download) if download is not None else obj.content_disposition
            expires = self.plan.cutover.presign_expires
            url = presigned_get_url(self.store, obj.dest_bucket, obj.dest_key, expires=expires, content_disposition=disposition)
        except MigrateError as err:
            log.warning("%s/%s: cannot presign: %s", bucket, key, err)
            return JSONResponse({"statusCode": "503", "error": "ServiceUnavailable", "message": "cannot sign a URL now"}, status_code=503)
        log.info("%s %s/%s -> 302 (presigned, %d s)", request.method, bucket, key, expires)
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": "private, no-store"})


def create_app(
    plan: "Plan",
    *,
    state_dir: str | Path | None = None,
    keys: AccessKeys | None = None,
    destination: "S3Store | None" = None,
) -> Starlette:
    """The ASGI app of the redirect route for `plan` (keys default to the environment the plan names)."""
    from migrate.stores.factory import open_destination

    access = keys if keys is not None else access_keys_from_environment(plan)
    if not access.jwt_secret and access.jwks is None:
        log.warning("neither cutover.serve.jwt_secret_env nor jwks_url is set in the plan: JWTs and signed-URL tokens will all be refused")
    elif not access.jwt_secret:
        log.warning("cutover.serve.jwt_secret_env is not set in the plan: HS256 tokens and signed-URL tokens will all be refused")
    index = ObjectIndex.for_run(RunDirectory.for_plan(plan.name, state_dir=state_dir), plan_label=plan.path or plan.name)
    route = _Route(
        plan=plan,
        index=index,
        keys=access,
        store=destination or open_destination(plan, concurrency=8),
    )
    return Starlette(routes=[Route(STORAGE_PREFIX + "/{path:path}", route.endpoint, methods=["GET", "HEAD"])])


def app_from_environment() -> Starlette:
    """For `uvicorn --factory migrate.serve:app_from_environment`: the plan file is $MIGRATE_PLAN."""
    from migrate.plan import load_plan

    plan_path = os.environ.get("MIGRATE_PLAN")
    if not plan_path:
        raise UserInputError("MIGRATE_PLAN is not set; export the plan file's path")
    return create_app(load_plan(plan_path), state_dir=os.environ.get("MIGRATE_STATE_DIR"))


class RunningServer:
    """A uvicorn server on a background thread (for tests and embedding); `stop()` ends it."""

    def __init__(self, app: Any, *, host: str, port: int):
        import uvicorn

        # access_log off: it would print signed-URL tokens from query strings.
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, name="migrate-serve", daemon=True)

    def start(self, *, timeout: float = 30.0) -> "RunningServer":
        import time

        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise MigrateError("the redirect route did not start")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_plan(plan: "Plan", *, host: str | None = None, port: int | None = None, state_dir: str | Path | None = None) -> None:
    """Serve the redirect route in the foreground until Ctrl-C (127.0.0.1 unless told otherwise)."""
    import uvicorn

    app = create_app(plan, state_dir=state_dir)
    config = uvicorn.Config(
        app,
        host=host or plan.cutover.serve.host,
        port=port if port is not None else plan.cutover.serve.port,
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
    uvicorn.Server(config).run()
