"""Users and roles: a viewer sees, an operator also gives verdicts (recorded under its
name), an admin does all; the review page logs in for an HttpOnly, SameSite=Strict session
cookie whose POSTs need its CSRF token; the single api.token stays an admin."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from hazardwatch.api.accounts import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Accounts,
    Principal,
    hash_password,
    verify_password,
)
from hazardwatch.api.app import ApiState, create_app
from hazardwatch.errors import ConfigError
from hazardwatch.settings import ApiSettings, load_settings
from tests.api.conftest import UUIDS
from tests.helpers import api_client

# Hashing at the real cost takes ~0.1 s each: the tests use a cheaper N (still scrypt).
CHEAP = 2**10
ALICE = hash_password("correct horse", n=CHEAP)
VERA = hash_password("viewer pass", n=CHEAP)
VERA_TOKEN = "v" * 32
ADMIN_TOKEN = "a" * 32


def settings(**extra: Any) -> ApiSettings:
    users = [
        {"name": "alice", "role": "operator", "password_hash": ALICE},
        {"name": "vera", "role": "viewer", "password_hash": VERA, "token": VERA_TOKEN},
    ]
    return ApiSettings(users=users, **extra)  # type: ignore[arg-type]


def login(client: TestClient, name: str, password: str) -> Any:
    return client.post("/api/v1/session", json={"name": name, "password": password})


def verdict(client: TestClient, uuid: str, csrf: str | None = None, **headers: str) -> Any:
    if csrf is not None:
        headers[CSRF_HEADER] = csrf
    body = {"verdict": "confirmed", "note": "seen on the clip"}
    return client.post(f"/api/v1/events/{uuid}/feedback", json=body, headers=headers)


def test_passwords_are_scrypt_hashes_that_only_their_password_opens() -> None:
    encoded = hash_password("s3cret", n=CHEAP)
    assert encoded.startswith(f"scrypt${CHEAP}$8$1$") and "s3cret" not in encoded
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret!", encoded)
    assert not verify_password("s3cret", "scrypt$not$a$hash")
    assert hash_password("s3cret", n=CHEAP) != encoded  # a fresh salt every time
    with pytest.raises(ConfigError):
        hash_password("")


def test_a_password_where_its_hash_belongs_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            None, api={"users": [{"name": "al", "role": "operator", "password_hash": "hunter2"}]}
        )
    assert "hash-password" in str(caught.value) and "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="more than once"):
        load_settings(None, api={"users": [{"name": "al", "role": "viewer"}] * 2})


def test_users_make_a_network_bind_acceptable_and_the_token_an_admin() -> None:
    assert settings(host="0.0.0.0").exposure() is None
    assert ApiSettings(host="0.0.0.0").exposure() is not None
    accounts = Accounts([], ADMIN_TOKEN)
    assert accounts.by_token(ADMIN_TOKEN) == Principal("api-token", "admin")
    assert accounts.by_token("b" * 32) is None
    assert Principal("vera", "viewer").may("viewer")
    assert not Principal("vera", "viewer").may("operator")
    assert Principal("root", "admin").may("operator")


def test_an_operator_logs_in_and_gives_a_verdict_recorded_under_her_name(
    state: ApiState,
) -> None:
    client = api_client(create_app(state, settings()))
    assert client.get("/api/v1/events").status_code == 401
    assert login(client, "alice", "wrong").status_code == 401
    assert login(client, "mallory", "correct horse").status_code == 401
    answer = login(client, "alice", "correct horse")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["name"], body["role"]) == ("alice", "operator") and body["csrf_token"]
    cookie = answer.headers["set-cookie"]
    assert f"{SESSION_COOKIE}=" in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie and "Path=/" in cookie
    assert client.get("/api/v1/events").status_code == 200  # the cookie says who
    assert client.get("/api/v1/session").json()["name"] == "alice"
    # A POST by cookie without its CSRF token: what a page on another site would send.
    refused = verdict(client, UUIDS[1])
    assert refused.status_code == 403 and CSRF_HEADER in refused.json()["detail"]
    assert verdict(client, UUIDS[1], "not-the-token").status_code == 403
    given = verdict(client, UUIDS[1], body["csrf_token"])
    assert given.status_code == 200, given.text
    assert given.json()["event"]["verdict_by"] == "alice"
    stored = state.repository.get_event(UUIDS[1])
    assert stored is not None and stored.verdict == "confirmed" and stored.verdict_by == "alice"
    # Logout ends the session on the server: the old cookie opens nothing any more.
    old = client.cookies.get(SESSION_COOKIE)
    assert client.delete("/api/v1/session").status_code == 403  # its CSRF token, too
    out = client.delete("/api/v1/session", headers={CSRF_HEADER: body["csrf_token"]})
    assert out.status_code == 204
    replay = api_client(create_app(state, settings()))
    replay.cookies.set(SESSION_COOKIE, old or "")
    assert replay.get("/api/v1/events").status_code == 401


def test_a_viewer_sees_but_cannot_judge_by_session_or_by_token(state: ApiState) -> None:
    client = api_client(create_app(state, settings()))
    csrf = login(client, "vera", "viewer pass").json()["csrf_token"]
    assert client.get(f"/api/v1/events/{UUIDS[0]}").status_code == 200
    refused = verdict(client, UUIDS[0], csrf)
    assert refused.status_code == 403 and "operator role" in refused.json()["detail"]
    program = api_client(create_app(state, settings()))
    bearer = {"Authorization": f"Bearer {VERA_TOKEN}"}
    assert program.get("/api/v1/events", headers=bearer).status_code == 200
    assert verdict(program, UUIDS[0], **bearer).status_code == 403
    stored = state.repository.get_event(UUIDS[0])
    assert stored is not None and stored.verdict is None


def test_the_single_api_token_keeps_working_as_an_admin(state: ApiState) -> None:
    client = api_client(create_app(state, settings(token=ADMIN_TOKEN)))
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert client.get("/api/v1/session", headers=bearer).json() == {
        "name": "api-token", "role": "admin", "csrf_token": None,
    }  # fmt: skip
    given = verdict(client, UUIDS[3], **bearer)  # a token needs no CSRF token: no cookie
    assert given.status_code == 200 and given.json()["event"]["verdict_by"] == "api-token"


def test_an_open_api_serves_everyone_as_an_anonymous_admin(state: ApiState) -> None:
    client = api_client(create_app(state))
    assert client.get("/api/v1/session").json()["name"] == "anonymous"
    given = verdict(client, UUIDS[3])
    assert given.status_code == 200 and given.json()["event"]["verdict_by"] == "anonymous"


def test_wrong_passwords_are_rate_limited_per_address(state: ApiState) -> None:
    client = api_client(create_app(state, settings()))
    answers = [login(client, "alice", f"guess {i}").status_code for i in range(22)]
    assert answers[:20] == [401] * 20 and answers[20:] == [429, 429]
    blocked = login(client, "alice", "correct horse")  # even the right one, for now
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1


def test_opening_an_event_marks_it_reviewed_for_that_user_only(state: ApiState) -> None:
    client = api_client(create_app(state, settings()))
    csrf = login(client, "alice", "correct horse").json()["csrf_token"]
    items = client.get("/api/v1/events").json()["items"]
    assert [e["reviewed"] for e in items] == [False] * 5
    opened = client.post(f"/api/v1/events/{UUIDS[1]}/review", headers={CSRF_HEADER: csrf})
    assert opened.status_code == 200 and opened.json()["by"] == "alice"
    again = client.post(f"/api/v1/events/{UUIDS[1]}/review", headers={CSRF_HEADER: csrf})
    assert again.status_code == 200  # opening it twice changes nothing
    unknown = "99999999-0000-4000-8000-000000000000"
    assert (
        client.post(f"/api/v1/events/{unknown}/review", headers={CSRF_HEADER: csrf}).status_code
        == 404
    )
    left = client.get("/api/v1/events", params={"reviewed": "false"}).json()["items"]
    assert UUIDS[1] not in [e["uuid"] for e in left] and len(left) == 4
    done = client.get("/api/v1/events", params={"reviewed": "true"}).json()["items"]
    assert [e["uuid"] for e in done] == [UUIDS[1]] and done[0]["reviewed"]
    # Another user has reviewed nothing; a viewer may mark what she opened.
    bearer = {"Authorization": f"Bearer {VERA_TOKEN}"}
    theirs = client.get("/api/v1/events", headers=bearer).json()["items"]
    assert not any(e["reviewed"] for e in theirs)
    repo = state.repository
    assert repo.unreviewed_by_camera("alice") == {"north": 1, "south": 3}  # UUIDS[1]: north
    assert repo.unreviewed_by_camera("vera") == {"north": 2, "south": 3}
    cameras = client.get("/api/v1/cameras").json()["items"]
    assert all("unreviewed" in c for c in cameras)
