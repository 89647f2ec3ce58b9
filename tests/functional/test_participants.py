"""Participants: names, API keys, authenticated submissions, per-participant limits,
the two leaderboard views and a participant's page."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import inspect, text

from gpuq.store.db import get_db
from tests.conftest import WORKED_EXAMPLE, bearer, make_admin, register, stored_count, submit_as


def secret_of(key: str) -> str:
    """The random part: after "gpuq_", 12 hex digits of key id and "_"."""
    return key[len("gpuq_") + 13 :]


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("alice", "alice"),
        ("Team_GPU-7", "Team_GPU-7"),
        ("\uff21lice", "Alice"),  # full-width A: NFKC makes it a plain A
        ("x" * 32, "x" * 32),
    ],
)
def test_acceptable_names_are_stored_normalised(client, raw, stored):
    response = client.post("/participants", json={"name": raw})
    assert response.status_code == 201
    assert response.get_json()["name"] == stored
    assert response.headers["Location"] == f"/participants/{stored}"


@pytest.mark.parametrize(
    "raw",
    [
        "ab",  # too short
        "x" * 33,  # too long
        "bad name",  # a space
        "\u0430lice",  # Cyrillic a: a look-alike
        "ali\u200bce",  # zero-width space
        "ali\x00ce",  # a control character
        "ali\nce",
        "al:ce",
        "",
    ],
)
def test_unacceptable_names_are_refused_and_nothing_is_stored(app, client, raw):
    response = client.post("/participants", json={"name": raw})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["errors"][0]["field"] == "name"
    with get_db(app).connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM participants")).scalar_one() == 0


def test_names_are_unique_ignoring_letter_case(client):
    register(client, "Alice")
    for taken in ("alice", "ALICE", "\uff21lice"):
        response = client.post("/participants", json={"name": taken})
        assert response.status_code == 409
        assert "taken" in response.get_json()["detail"]


def test_the_key_is_shown_once_with_a_recognisable_prefix(client):
    created = client.post("/participants", json={"name": "alice"}).get_json()
    key = created["api_key"]
    assert key.startswith("gpuq_") and key.startswith(created["key_prefix"] + "_")
    assert len(secret_of(key)) >= 43  # 256 random bits, base64url
    me = client.get("/participants/me", headers=bearer(key)).get_json()
    assert me["name"] == "alice" and me["key_prefix"] == created["key_prefix"]
    assert key not in str(me)


def test_keys_never_appear_in_plain_form_in_the_database_or_the_logs(app, client, caplog):
    caplog.set_level(logging.DEBUG)
    keys = [register(client, "alice")]
    keys.append(client.post("/participants/me/key", headers=bearer(keys[0])).get_json()["api_key"])
    admin = make_admin(app)
    keys.append(admin)
    assert submit_as(client, keys[1]).status_code == 201
    assert submit_as(client, keys[0]).status_code == 401  # rotated away, refused: nothing logged either
    assert client.get("/admin/audit", headers=bearer(admin)).status_code == 200

    engine = get_db(app).engine
    dump = []
    with engine.connect() as connection:
        for table in inspect(engine).get_table_names():
            dump.extend(str(row) for row in connection.execute(text(f"SELECT * FROM {table}")))
    stored = "\n".join(dump)
    logged = caplog.text
    for key in keys:
        assert secret_of(key) not in stored and secret_of(key) not in logged
    # What is stored is the hash and the public id, found by what we know of the key.
    assert all(key[len("gpuq_") : len("gpuq_") + 12] in stored for key in keys)


def test_a_submission_with_a_key_belongs_to_its_participant(client):
    key = register(client, "alice")
    created = submit_as(client, key).get_json()
    assert created["participant"] == "alice"
    detail = client.get(f"/submissions/{created['submission_id']}").get_json()
    assert detail["participant"] == "alice" and detail["status"] == "active"
    board = client.get("/leaderboard").get_json()["leaderboard"]
    assert board[0]["participant"] == "alice"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer gpuq_000000000000_" + "A" * 43,  # well-formed, unknown
        "Bearer not-a-key",
        "Basic YWxpY2U6c2VjcmV0",
        "Bearer ",
    ],
)
def test_a_bad_key_is_refused_not_taken_as_anonymous(app, client, header):
    response = client.post("/submit_qualification", json=WORKED_EXAMPLE, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.mimetype == "application/problem+json"
    assert stored_count(app) == 0


def test_a_tampered_key_is_refused(app, client):
    key = register(client, "alice")
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert submit_as(client, tampered).status_code == 401
    assert stored_count(app) == 0


def test_rotating_and_revoking_keys(client):
    old = register(client, "alice")
    new = client.post("/participants/me/key", headers=bearer(old)).get_json()["api_key"]
    assert new != old
    assert submit_as(client, old).status_code == 401
    assert submit_as(client, new).status_code == 201
    revoked = client.delete("/participants/me/key", headers=bearer(new))
    assert revoked.get_json() == {"name": "alice", "revoked": 1}
    assert submit_as(client, new).status_code == 401
    assert client.get("/participants/me", headers=bearer(new)).status_code == 401


def test_an_admin_issues_a_new_key_for_a_lost_one(app, client):
    lost = register(client, "alice")
    admin = make_admin(app)
    response = client.post("/admin/participants/alice/key", headers=bearer(admin))
    assert response.status_code == 200
    assert submit_as(client, lost).status_code == 401
    assert submit_as(client, response.get_json()["api_key"]).status_code == 201


def test_anonymous_submissions_can_be_switched_off(make_app):
    app = make_app(allow_anonymous=False)
    client = app.test_client()
    refused = submit_as(client)
    assert refused.status_code == 401
    assert "anonymous" in refused.get_json()["detail"]
    assert stored_count(app) == 0
    assert submit_as(client, register(client, "alice")).status_code == 201


def test_closed_registration_leaves_it_to_admins(make_app):
    app = make_app(open_registration=False)
    client = app.test_client()
    assert client.post("/participants", json={"name": "alice"}).status_code == 401
    admin = make_admin(app)
    assert client.post("/participants", json={"name": "alice"}, headers=bearer(admin)).status_code == 201
    alice = client.post("/admin/participants", json={"name": "bob"}, headers=bearer(admin)).get_json()
    assert (
        client.post("/participants", json={"name": "carol"}, headers=bearer(alice["api_key"])).status_code
        == 403
    )


def test_a_participant_on_three_addresses_is_limited_once_by_key(make_app):
    app = make_app(participant_limit="4 per hour", submit_limit="10 per hour")
    client = app.test_client()
    key = register(client, "alice")
    addresses = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    accepted = [submit_as(client, key, address).status_code for address in addresses + addresses[:1]]
    assert accepted == [201, 201, 201, 201]
    refused = submit_as(client, key, "10.0.0.2")
    assert refused.status_code == 429
    assert "participant" in refused.get_json()["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert stored_count(app) == 4
    # The addresses themselves still have quota: anonymous submissions from them go through.
    assert submit_as(client, None, "10.0.0.2").status_code == 201
    quota = client.get("/quota", headers=bearer(key), environ_base={"REMOTE_ADDR": "10.0.0.2"}).get_json()
    assert quota["participant"] == "alice"
    mine = [item for item in quota["limits"] if item["scope"] == "participant"]
    assert mine[0]["remaining"] == 0


def test_refused_by_the_participant_limit_uses_none_of_the_address_quota(make_app):
    app = make_app(participant_limit="1 per hour", submit_limit="2 per hour")
    client = app.test_client()
    key = register(client, "alice")
    assert submit_as(client, key).status_code == 201
    assert submit_as(client, key).status_code == 429
    assert submit_as(client, None).status_code == 201  # the address's second unit was not used up


def test_view_best_shows_each_participant_once_and_view_all_every_submission(client):
    alice, bob = register(client, "alice"), register(client, "bob")
    a_low = submit_as(client, alice, accuracy=50).get_json()["submission_id"]
    a_high = submit_as(client, alice, accuracy=90).get_json()["submission_id"]
    a_lower = submit_as(client, alice, accuracy=10).get_json()["submission_id"]
    b_tie = submit_as(client, bob, accuracy=90, address="10.0.0.2").get_json()["submission_id"]
    anon_1 = submit_as(client, None, accuracy=70, address="10.0.0.3").get_json()["submission_id"]
    anon_2 = submit_as(client, None, accuracy=70, address="10.0.0.3").get_json()["submission_id"]

    best = client.get("/leaderboard").get_json()
    assert best["view"] == "best"
    # alice reached the tied score first; each anonymous submission stands alone.
    assert [(e["participant"], e["submission_id"]) for e in best["leaderboard"]] == [
        ("alice", a_high),
        ("bob", b_tie),
        (None, anon_1),
        (None, anon_2),
    ]
    assert best["total"] == 4
    every = client.get("/leaderboard?view=all").get_json()
    assert [e["submission_id"] for e in every["leaderboard"]] == [
        a_high,
        b_tie,
        anon_1,
        anon_2,
        a_low,
        a_lower,
    ]
    assert every["total"] == 6
    assert client.get("/leaderboard?view=mine").status_code == 400


def test_a_participant_s_first_of_equal_scores_keeps_the_place(client):
    alice = register(client, "alice")
    first = submit_as(client, alice).get_json()["submission_id"]
    submit_as(client, alice)
    board = client.get("/leaderboard").get_json()["leaderboard"]
    assert [e["submission_id"] for e in board] == [first]


def test_a_participant_s_page(client):
    alice, bob = register(client, "alice"), register(client, "bob")
    submit_as(client, bob, accuracy=100, address="10.0.0.2")
    ids = [submit_as(client, alice, accuracy=a).get_json()["submission_id"] for a in (10, 60, 30)]
    page = client.get("/participants/ALICE?limit=2").get_json()
    assert page["name"] == "alice"
    assert page["best_score"] == client.get(f"/submissions/{ids[1]}").get_json()["score"]
    assert page["rank"] == 2 and page["submission_count"] == 3
    assert [h["submission_id"] for h in page["history"]] == [ids[2], ids[1]]  # newest first
    assert [h["best"] for h in page["history"]] == [False, True]
    rest = client.get("/participants/alice?limit=2&offset=2").get_json()["history"]
    assert [h["submission_id"] for h in rest] == [ids[0]]
    assert "key_prefix" not in page
    assert client.get("/participants/nobody").status_code == 404
    assert client.get("/participants/alice?limit=0").status_code == 400
