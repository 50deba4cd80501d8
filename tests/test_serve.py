"""The redirect route on 127.0.0.1, exercised with a real HTTP client that follows redirects to SeaweedFS."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from typing import Iterator

import httpx
import jwt
import pytest

from migrate.serve import RunningServer, create_app
from migrate.stack.process import free_port
from migrate.stack.supabase_server.auth import make_jwt
from migrate.stack.supabase_server.signed import sign_object_url
from tests.fixtures_cutover import PRIVATE_OBJECTS, PUBLIC_OBJECTS, CutoverWorld

AVATAR = "users/u1/avatar.png"
REPORT = "reports/q1.pdf"


@pytest.fixture
def route(cutover_world: CutoverWorld) -> Iterator[httpx.Client]:
    """The route for the world's plan, served by uvicorn on 127.0.0.1 (a free port), and a client for it."""
    app = create_app(cutover_world.plan(), state_dir=cutover_world.state_dir)
    server = RunningServer(app, host="127.0.0.1", port=0).start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
            yield client
    finally:
        server.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_public_object_is_a_301_to_its_public_url_and_the_bytes_follow(route: httpx.Client, cutover_world: CutoverWorld) -> None:
    world = cutover_world
    for form in ("object/public", "render/image/public", "object"):
        answer = route.get(f"/storage/v1/{form}/{world.public_bucket}/{AVATAR}")
        assert answer.status_code == 301, (form, answer.text)
        assert answer.headers["location"] == f"{world.seaweed.endpoint_url}/{world.dest}/avatars/u1/avatar.png"
        assert not answer.content  # redirects only, never bytes
    followed = route.get(f"/storage/v1/object/public/{world.public_bucket}/users/u2/a%20b%20%281%29.txt", follow_redirects=True)
    assert followed.status_code == 200 and followed.content == PUBLIC_OBJECTS["users/u2/a b (1).txt"]
    assert len(followed.history) == 1 and followed.history[0].status_code == 301


def test_public_download_keeps_the_content_disposition_through_a_presigned_url(route: httpx.Client, cutover_world: CutoverWorld) -> None:
    followed = route.get(f"/storage/v1/object/public/{cutover_world.public_bucket}/{AVATAR}", params={"download": "me.png"}, follow_redirects=True)
    assert followed.history[0].status_code == 302
    assert followed.status_code == 200 and followed.content == PUBLIC_OBJECTS[AVATAR]
    assert followed.headers["content-disposition"] == "attachment; filename=me.png; filename*=UTF-8''me.png;"


def test_private_object_needs_the_credentials_the_old_route_needed(route: httpx.Client, cutover_world: CutoverWorld) -> None:
    world = cutover_world
    path = f"/storage/v1/object/authenticated/{world.private_bucket}/{REPORT}"
    for headers in (_bearer(world.server.service_key), {"apikey": world.secret_key}, {"apikey": world.server.service_key}):
        answer = route.get(path, headers=headers)
        assert answer.status_code == 302, answer.text
        assert answer.headers["cache-control"] == "private, no-store"
        assert "X-Amz-Signature=" in answer.headers["location"] and "X-Amz-Expires=600" in answer.headers["location"]
        followed = route.get(path, headers=headers, follow_redirects=True)
        assert followed.status_code == 200 and followed.content == PRIVATE_OBJECTS[REPORT]
    # The bare route with a service key works too.
    bare = route.get(f"/storage/v1/object/{world.private_bucket}/{REPORT}", headers=_bearer(world.server.service_key), follow_redirects=True)
    assert bare.content == PRIVATE_OBJECTS[REPORT]


REFUSALS = [
    # (route variant, credentials, HTTP status, code, message): what Supabase answers for each.
    ("authenticated", None, 400, "AccessDenied", "Invalid Compact JWS"),
    ("authenticated", "wrong-secret", 400, "AccessDenied", "signature verification failed"),
    ("authenticated", "expired", 400, "AccessDenied", '"exp" claim timestamp check failed'),
    ("authenticated", "anon", 400, "NoSuchKey", "Object not found"),
    # An sb_ key as Bearer without an apikey header: the API gateway answers itself (no code).
    ("authenticated", "sb_secret_wrong", 401, None, "No API key found in request"),
    ("bare", None, 400, "NoSuchBucket", "Bucket not found"),
    ("bare", "wrong-secret", 400, "NoSuchBucket", "Bucket not found"),
    ("public", None, 400, "NoSuchBucket", "Bucket not found"),
]


def test_refused_credentials_get_what_supabase_answers(route: httpx.Client, cutover_world: CutoverWorld) -> None:
    world = cutover_world
    tokens = {
        None: None,
        "wrong-secret": make_jwt("not-the-project-secret-at-all-0000000", "service_role"),
        "expired": make_jwt(world.jwt_secret, "service_role", expires_in=-60),
        "anon": world.server.anon_key,
        "sb_secret_wrong": "sb_secret_" + "x" * 30,
    }
    for variant, credentials, status, code, message in REFUSALS:
        token = tokens[credentials]
        headers = _bearer(token) if token else {}
        prefix = {"authenticated": "object/authenticated", "bare": "object", "public": "object/public"}[variant]
        path = f"/storage/v1/{prefix}/{world.private_bucket}/{REPORT}"
        ours = route.get(path, headers=headers)
        upstream = httpx.get(f"{world.server.url}{path}", headers=headers, timeout=30)
        case = (variant, credentials)
        assert (ours.status_code, ours.json().get("code"), ours.json()["message"]) == (status, code, message), case
        assert "location" not in ours.headers, case
        # The bundled Supabase server (recorded against upstream) answers the same status and code.
        assert (upstream.status_code, upstream.json().get("code")) == (ours.status_code, ours.json().get("code")), case


def test_signed_url_tokens_are_verified_like_supabase(route: httpx.Client, cutover_world: CutoverWorld, caplog: pytest.LogCaptureFixture) -> None:
    world = cutover_world
    signed = world.http.post(f"{world.server.url}/storage/v1/object/sign/{world.private_bucket}/{REPORT}", json={"expiresIn": 60}).json()["signedURL"]
    with caplog.at_level(logging.INFO, logger="migrate.serve"):
        followed = route.get(f"/storage/v1{signed}", follow_redirects=True)
    assert followed.history[0].status_code == 302
    assert followed.status_code == 200 and followed.content == PRIVATE_OBJECTS[REPORT]
    token = signed.split("token=")[1]
    # The image-render route takes the same tokens (renderSignedImage.ts); HEAD is answered like GET.
    render = route.get(f"/storage/v1/render/image/sign/{world.private_bucket}/{REPORT}", params={"token": token}, follow_redirects=True)
    assert render.history[0].status_code == 302 and render.content == PRIVATE_OBJECTS[REPORT]
    assert route.head(f"/storage/v1{signed}").status_code == 302
    assert token not in caplog.text and "X-Amz-Signature" not in caplog.text
    assert f"{world.private_bucket}/{REPORT} -> 302" in caplog.text

    expired = sign_object_url(world.jwt_secret, f"{world.private_bucket}/{REPORT}", -10)
    other = sign_object_url(world.jwt_secret, f"{world.private_bucket}/reports/2024/summary.csv", 60)
    forged = jwt.encode({"url": f"{world.private_bucket}/{REPORT}", "exp": int(time.time()) + 60}, "another-secret-entirely-000000000000", algorithm="HS256")
    for token, code in ((expired, "InvalidJWT"), (other, "InvalidSignature"), (forged, "InvalidJWT")):
        path = f"/storage/v1/object/sign/{world.private_bucket}/{REPORT}?token={token}"
        ours = route.get(path)
        upstream = httpx.get(f"{world.server.url}{path}", timeout=30)
        assert ours.status_code == upstream.status_code == 400
        assert ours.json()["code"] == upstream.json()["code"] == code
        if code == "InvalidJWT":  # the verifier's own words, e.g. '"exp" claim timestamp check failed'
            assert ours.json()["message"] == upstream.json()["message"]


def test_objects_not_in_the_manifest_are_404(route: httpx.Client, cutover_world: CutoverWorld) -> None:
    world = cutover_world
    assert route.get(f"/storage/v1/object/public/{world.public_bucket}/users/nobody.png").status_code == 404
    missing = route.get(f"/storage/v1/object/authenticated/{world.private_bucket}/reports/nope.pdf", headers=_bearer(world.server.service_key))
    assert missing.status_code == 404 and missing.json()["code"] == "NoSuchKey"
    # Renamed objects are found by their OLD key only.
    assert route.get(f"/storage/v1/object/public/{world.public_bucket}/avatars/u1/avatar.png").status_code == 404
    assert route.get("/storage/v1/bucket").status_code == 404


def test_migrate_serve_binds_loopback_and_never_logs_tokens(cutover_world: CutoverWorld) -> None:
    world = cutover_world
    port = free_port()
    command = [sys.executable, "-m", "migrate", "serve", str(world.plan_path), "--state-dir", str(world.state_dir), "--port", str(port), "-v"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/storage/v1/object/authenticated/{world.private_bucket}/{REPORT}", headers=_bearer(world.server.service_key), timeout=5)
                break
            except httpx.TransportError:
                assert child.poll() is None and time.monotonic() < deadline, child.stderr.read() if child.stderr else ""
                time.sleep(0.2)
        assert answer.status_code == 302
        connections = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
        listening = [line for line in connections.splitlines() if f":{port} " in line]
        assert listening and all("127.0.0.1:" in line for line in listening), listening
    finally:
        child.terminate()
        out, err = child.communicate(timeout=30)
    assert f"127.0.0.1:{port}" in out
    assert world.server.service_key not in out + err and "X-Amz-Signature" not in out + err
    assert f"{world.private_bucket}/{REPORT} -> 302" in err


def test_unset_secret_variable_is_one_line_exit_2(cutover_world: CutoverWorld, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from migrate.cli import main

    monkeypatch.delenv("CUTOVER_JWT_SECRET")
    assert main(["serve", str(cutover_world.plan_path), "--state-dir", str(cutover_world.state_dir), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "CUTOVER_JWT_SECRET, which is not set" in err and len(err.splitlines()) == 1
    assert cutover_world.jwt_secret not in err


def test_a_new_plan_is_picked_up_without_a_restart(route: httpx.Client, cutover_world: CutoverWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    from migrate.object_index import ObjectIndex

    world = cutover_world
    monkeypatch.setattr(ObjectIndex, "CHECK_SECONDS", 0.0)
    path = f"/storage/v1/object/public/{world.public_bucket}/users/u3/new.png"
    assert route.get(path).status_code == 404
    world.upload(world.public_bucket, "users/u3/new.png", b"uploaded after the first run")
    world.migrate_replan()
    followed = route.get(path, follow_redirects=True)
    assert followed.history[0].status_code == 301 and followed.content == b"uploaded after the first run"
