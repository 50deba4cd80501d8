"""Signed URLs: downloads (getSignedURL.ts, getSignedURLs.ts, getSignedObject.ts) and uploads
(getSignedUploadURL.ts, uploadSignedObject.ts) of github.com/supabase/storage src/http/routes/object/.

Tokens are HS256 JWTs signed with the project's JWT secret (src/storage/object.ts
`signObjectUrl` / `signUploadObjectUrl`): `{"url": "<bucket>/<key>", "exp"}` for
a download; `{"owner", "url", "upsert", "scope": "upload"}` for an upload.
`verifyObjectSignature` checks the signature (InvalidJWT), then that the token
names this object (InvalidSignature). The token's scope keeps a download token
from authorising an upload and the reverse, as upstream's SIGNED_URL_SCOPE_* do.
"""

from __future__ import annotations

import time
import urllib.parse
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import jwt

from migrate.stack.supabase_server import errors
from migrate.stack.supabase_server.auth import ALGORITHM, TokenRejected, verify_jwt
from migrate.stack.supabase_server.validation import as_positive, object_body, required
from migrate.stack.supabase_server.wire import Request, Response, http_date, json_response

if TYPE_CHECKING:
    from migrate.stack.supabase_server.routes import StorageApi

UPLOAD_SCOPE = "upload"
# storage3's create_signed_upload_url: "valid for 2 hours" (config.ts
# uploadSignedUrlExpirationTime, the hosted default).
UPLOAD_URL_EXPIRY = 2 * 3600


def sign_object_url(secret: str, url: str, expires_in: int) -> str:
    """The token of a signed download URL for `url` ("bucket/key")."""
    now = int(time.time())
    return jwt.encode({"url": url, "iat": now, "exp": now + expires_in}, secret, algorithm=ALGORITHM)


def sign_upload_url(secret: str, url: str, *, owner: str | None, upsert: bool, expires_in: int = UPLOAD_URL_EXPIRY) -> str:
    """The token of a signed upload URL for `url` ("bucket/key")."""
    now = int(time.time())
    claims: dict[str, Any] = {"url": url, "upsert": upsert, "scope": UPLOAD_SCOPE, "iat": now, "exp": now + expires_in}
    if owner:
        claims["owner"] = owner
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _path(route: str, bucket_id: str, key: str, token: str) -> str:
    # object.ts answers "/object/<route>/<bucket>/<key>?token=..."; the key is
    # percent-encoded here so keys with "?" survive the round trip.
    return f"/object/{route}/{urllib.parse.quote(f'{bucket_id}/{key}', safe='/')}?token={token}"


class SignedUrlRoutes:
    """The signing routes; the rest of the API (catalog, blobs, uploads) comes from `api`."""

    def __init__(self, api: "StorageApi"):
        self.api = api

    @property
    def secret(self) -> str:
        return self.api.jwt_secret

    def _verify(self, request: Request, *, scope: str | None) -> dict[str, Any]:
        """object.ts verifyObjectSignature for this request's bucket and key."""
        token = request.arg("token")
        if not token:
            raise errors.validation_error("querystring must have required property 'token'")
        try:
            claims = verify_jwt(token, self.secret)
        except TokenRejected as err:
            raise errors.invalid_jwt(str(err)) from err
        bucket_id, key = request.params["bucket"], request.params["key"]
        if claims.get("url") != f"{bucket_id}/{key}" or claims.get("scope") != scope:
            raise errors.invalid_signature()
        return claims

    # -- downloads ----------------------------------------------------------------------

    def sign_url(self, request: Request) -> Response:
        """POST /object/sign/{bucket}/{key} (getSignedURL.ts): {"signedURL": "/object/sign/...?token="}."""
        principal = self.api.principal(request)
        body = object_body(request.json())
        expires_in = as_positive(required(body, "expiresIn"), "expiresIn")
        bucket_id, key = request.params["bucket"], self.api._valid_key(request.params["key"])
        self.api._readable_source(principal, bucket_id, key)
        token = sign_object_url(self.secret, f"{bucket_id}/{key}", expires_in)
        return json_response({"signedURL": _path("sign", bucket_id, key, token)})

    def sign_urls(self, request: Request) -> Response:
        """POST /object/sign/{bucket} {"paths", "expiresIn"} (getSignedURLs.ts)."""
        principal = self.api.principal(request)
        body = object_body(request.json())
        expires_in = as_positive(required(body, "expiresIn"), "expiresIn")
        paths = required(body, "paths")
        if not isinstance(paths, list) or not all(isinstance(item, str) for item in paths):
            raise errors.validation_error("body/paths must be array")
        bucket_id = request.params["bucket"]
        found = self.api.catalog.existing_names(bucket_id, paths) if principal.bypasses_rls and paths else set()
        answer = []
        for path in paths:
            if path in found:
                token = sign_object_url(self.secret, f"{bucket_id}/{path}", expires_in)
                answer.append({"error": None, "path": path, "signedURL": _path("sign", bucket_id, path, token)})
            else:
                answer.append(
                    {
                        "error": "Either the object does not exist or you do not have access to it",
                        "path": path,
                        "signedURL": None,
                    }
                )
        return json_response(answer)

    def get_signed_object(self, request: Request) -> Response:
        """GET /object/sign/{bucket}/{key}?token= (getSignedObject.ts)."""
        claims = self._verify(request, scope=None)
        bucket_id, key = request.params["bucket"], self.api._valid_key(request.params["key"])
        obj = self.api.catalog.find_object(bucket_id, key)
        if obj is None:
            raise errors.no_such_key()
        expires = http_date(datetime.fromtimestamp(int(claims["exp"]), timezone.utc))
        return self.api._render_asset(request, obj, expires=expires)

    # -- uploads ------------------------------------------------------------------------

    def sign_upload_url(self, request: Request) -> Response:
        """POST /object/upload/sign/{bucket}/{key} (getSignedUploadURL.ts): {"url", "token"}.

        object.ts signUploadObjectUrl runs uploader.canUpload first: a valid key,
        an existing bucket, the caller's INSERT right, and no existing object
        unless `x-upsert: true`.
        """
        principal = self.api.principal(request)
        request.json()
        bucket_id, key = request.params["bucket"], self.api._valid_key(request.params["key"])
        upsert = request.header("x-upsert") == "true"
        self.api._bucket(bucket_id)
        if not principal.bypasses_rls:
            raise errors.rls_denied()
        if not upsert and self.api.catalog.object_exists(bucket_id, key):
            raise errors.key_already_exists()
        token = sign_upload_url(self.secret, f"{bucket_id}/{key}", owner=principal.owner, upsert=upsert)
        return json_response({"url": _path("upload/sign", bucket_id, key, token), "token": token})

    def upload_signed(self, request: Request) -> Response:
        """PUT /object/upload/sign/{bucket}/{key}?token= (uploadSignedObject.ts): {"Key": "<bucket>/<key>"}.

        The upload runs as the superuser with the token's owner and upsert flag,
        whatever the request's own headers say (no API key is needed).
        """
        claims = self._verify(request, scope=UPLOAD_SCOPE)
        bucket_id, key = request.params["bucket"], self.api._valid_key(request.params["key"])
        owner = claims.get("owner")
        self.api.uploads.upload(
            request, bucket_id=bucket_id, key=key, owner=str(owner) if owner else None, upsert=bool(claims.get("upsert"))
        )
        return json_response({"Key": f"{bucket_id}/{key}"})
