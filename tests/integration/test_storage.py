"""The database as the last line of defence, migrations, and scoring profile versions."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DataError, IntegrityError

from gpuq import create_app
from gpuq.config import Settings
from gpuq.store import migrate
from gpuq.store.db import get_db, make_engine
from tests import services
from tests.conftest import WORKED_EXAMPLE

VALID_ROW = {
    "gpu_utilization": "90",
    "memory_usage": "85",
    "power_efficiency": "95",
    "completion_time": "30",
    "accuracy": "98",
    "score": "87.95",
    "points_gpu_utilization": "22.5",
    "points_memory_usage": "17",
    "points_power_efficiency": "23.75",
    "points_completion_time": "10",
    "points_accuracy": "14.7",
}


def insert_raw(app, **overrides: str) -> None:
    row = {**VALID_ROW, **overrides}
    columns = ", ".join(row)
    values = ", ".join(f"CAST(:{name} AS NUMERIC)" for name in row)
    with get_db(app).engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO scoring_profiles (version, parameters, created_at) "
                "VALUES (1, '{}', now()) ON CONFLICT DO NOTHING"
            )
        )
        connection.execute(
            text(
                f"INSERT INTO submissions ({columns}, profile_version, client_address, created_at) "
                f"VALUES ({values}, 1, '127.0.0.1', now())"
            ),
            row,
        )


def test_a_valid_raw_row_is_accepted(make_app):
    insert_raw(make_app())


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("gpu_utilization", "NaN"),
        ("memory_usage", "Infinity"),
        ("accuracy", "-Infinity"),
        ("power_efficiency", "100.0001"),
        ("gpu_utilization", "-1"),
        ("completion_time", "0"),
        ("completion_time", "86401"),
        ("score", "NaN"),
        ("score", "100.01"),
        ("points_accuracy", "-0.0001"),
    ],
)
def test_check_constraints_refuse_what_validation_refuses(make_app, column, value):
    with pytest.raises((IntegrityError, DataError)):  # CHECK, or the NUMERIC type itself
        insert_raw(make_app(), **{column: value})


def test_migrations_upgrade_and_downgrade_on_a_fresh_postgresql_database():
    url = services.create_database()
    engine = make_engine(Settings(database_url=url))
    try:
        assert not migrate.is_current(engine)
        migrate.upgrade(engine)
        assert migrate.is_current(engine)
        assert {"submissions", "scoring_profiles"} <= set(inspect(engine).get_table_names())
        migrate.upgrade(engine)  # nothing left to do: a no-op
        migrate.downgrade(engine, "base")
        assert "submissions" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
        services.drop_database(url)


def test_migrations_from_several_processes_at_once_apply_once(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    url = services.create_database()
    engines = [make_engine(Settings(database_url=url)) for _ in range(4)]
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(migrate.upgrade, engines))
        assert migrate.is_current(engines[0])
        with engines[0].connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    finally:
        for engine in engines:
            engine.dispose()
        services.drop_database(url)


def test_sqlite_migrations_create_the_same_tables(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    migrate.upgrade(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("submissions")}
    assert {"gpu_utilization", "score", "points_accuracy", "profile_version", "client_address"} <= columns
    engine.dispose()


def test_settings_only_seed_the_first_profile_version(make_app, caplog):
    first = make_app().test_client()
    old = first.post("/submit_qualification", json=WORKED_EXAMPLE).get_json()
    # Changed settings do not silently score new submissions differently from old ones:
    # the database's active profile decides (changes go through PUT /admin/scoring).
    second = make_app(time_worst_seconds=60).test_client()
    with caplog.at_level("WARNING", logger="gpuq.submissions.profiles"):
        new = second.post("/submit_qualification", json=WORKED_EXAMPLE).get_json()

    assert old["score"] == new["score"] == 87.95
    assert second.get(f"/submissions/{new['submission_id']}").get_json()["profile_version"] == 1
    assert "only seed a new database" in caplog.text


def test_a_new_database_is_seeded_from_the_settings(make_app):
    client = make_app(time_worst_seconds=60).test_client()
    created = client.post("/submit_qualification", json=WORKED_EXAMPLE).get_json()
    assert created["score"] == 85.45  # 30 s of 60 s: 7.5 time points instead of 10


def test_timestamps_are_stored_as_utc(make_app):
    app = make_app()
    client = app.test_client()
    before = dt.datetime.now(dt.UTC)
    response = client.post("/submit_qualification", json=WORKED_EXAMPLE)
    submitted = client.get(response.headers["Location"]).get_json()["submitted_at"]
    moment = dt.datetime.fromisoformat(submitted.replace("Z", "+00:00"))
    assert abs((moment - before).total_seconds()) < 60


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrading_a_database_with_submissions_keeps_every_score(database, tmp_path):
    """A database from before participants (0002) with a stored profile and submissions:
    after the upgrade the profile is the active one (weights now fractions), the rows are
    anonymous, ranked and unchanged, and the service scores and ranks as before."""
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}" if database == "sqlite" else services.create_database()
    engine = make_engine(Settings(database_url=url))
    try:
        migrate.upgrade(engine, "0002")
        old_profile = (
            '{"time_best":"0","time_worst":"90","weight_accuracy":"15","weight_completion_time":"15",'
            '"weight_gpu_utilization":"25","weight_memory_usage":"20","weight_power_efficiency":"25"}'
        )
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO scoring_profiles (version, parameters, created_at) VALUES (1, :p, :t)"),
                {"p": old_profile, "t": dt.datetime(2026, 1, 1)},
            )
            columns = ", ".join(VALID_ROW)
            values = ", ".join(f":{name}" for name in VALID_ROW)
            connection.execute(
                text(
                    f"INSERT INTO submissions ({columns}, profile_version, client_address, created_at) "
                    f"VALUES ({values}, 1, '127.0.0.1', :t)"
                ),
                {**{k: float(v) for k, v in VALID_ROW.items()}, "t": dt.datetime(2026, 1, 1)},
            )
            connection.execute(  # a row referring to the submission, as a keyed submit leaves
                text(
                    "INSERT INTO idempotency_keys (scope, key, fingerprint, state, submission_id, "
                    "created_at) VALUES ('127.0.0.1', 'k', 'f', 'done', 1, :t)"
                ),
                {"t": dt.datetime(2026, 1, 1)},
            )
        migrate.upgrade(engine)
        with engine.connect() as connection:
            profile = connection.execute(text("SELECT parameters, active FROM scoring_profiles")).one()
            row = connection.execute(text("SELECT ranked, leads, participant_id FROM submissions")).one()
        assert '"weight_gpu_utilization":"0.25"' in profile.parameters and profile.active
        assert bool(row.ranked) and bool(row.leads) and row.participant_id is None

        app = create_app(Settings(database_url=url))
        client = app.test_client()
        assert client.get("/submissions/1").get_json()["profile_version"] == 1
        created = client.post("/submit_qualification", json=WORKED_EXAMPLE).get_json()
        assert created["score"] == 87.95 and created["rank"] == 2  # ties go to the earlier one
        assert [e["submission_id"] for e in client.get("/leaderboard").get_json()["leaderboard"]] == [1, 2]
        get_db(app).engine.dispose()
        migrate.downgrade(engine, "0002")  # and back, keeping the rows
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM submissions")).scalar_one() == 2
            assert connection.execute(text("SELECT count(*) FROM idempotency_keys")).scalar_one() == 1
            parameters = connection.execute(text("SELECT parameters FROM scoring_profiles")).scalar_one()
        assert '"weight_gpu_utilization":"25"' in parameters
    finally:
        engine.dispose()
        if database == "postgresql":
            services.drop_database(url)
