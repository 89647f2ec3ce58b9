"""Rescoring every submission after a scoring profile change, on PostgreSQL.

`.venv/bin/python bench/rescore.py [--rows 1000000] [--participants 2000]`

Creates a throw-away database, fills it with `--rows` submissions (random
metrics; a third anonymous, the rest spread over `--participants`
participants), then times, each in its own transaction:

1. a dry run of a new profile (rolled back),
2. applying it (committed; the second change, so the score history already
   holds a row per submission),

and checks a random sample of rows (and every leading row) against
gpuq.scoring. Prints the times; removes the database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select, text  # noqa: E402

from gpuq.config import Settings  # noqa: E402
from gpuq.scoring import METRICS, Profile, score  # noqa: E402
from gpuq.store import migrate  # noqa: E402
from gpuq.store.db import make_engine  # noqa: E402
from gpuq.store.models import Submission  # noqa: E402
from gpuq.submissions import profiles, rescoring  # noqa: E402
from tests import services  # noqa: E402

NEW = Profile(
    weights={
        "gpu_utilization": Decimal("0.3"),
        "memory_usage": Decimal("0.15"),
        "power_efficiency": Decimal("0.2"),
        "completion_time": Decimal("0.2"),
        "accuracy": Decimal("0.15"),
    },
    time_best=Decimal("5"),
    time_worst=Decimal("120"),
)


def fill(engine, rows: int, participants: int) -> None:
    """Random submissions, inserted set-based; their scores are set by a first rescoring pass."""
    with engine.connect() as connection:
        profiles.ensure_active(connection, Profile(), dt.datetime.now(dt.UTC))  # commits itself
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO participants (name, name_key, is_admin, created_at) "
                "SELECT 'p' || i, 'p' || i, false, now() FROM generate_series(1, :n) AS i"
            ),
            {"n": participants},
        )
        connection.execute(
            text(
                "INSERT INTO submissions (gpu_utilization, memory_usage, power_efficiency, completion_time, "
                "accuracy, score, points_gpu_utilization, points_memory_usage, points_power_efficiency, "
                "points_completion_time, points_accuracy, profile_version, client_address, created_at, "
                "participant_id, leads) "
                "SELECT round((random() * 100)::numeric, 4), round((random() * 100)::numeric, 4), "
                "round((random() * 100)::numeric, 4), round((random() * 200 + 0.0001)::numeric, 4), "
                "round((random() * 100)::numeric, 4), 0, 0, 0, 0, 0, 0, 1, '127.0.0.1', now(), "
                "CASE WHEN i % 3 = 0 THEN NULL ELSE 1 + i % :p END, i % 3 = 0 "
                "FROM generate_series(1, :n) AS i"
            ),
            {"n": rows, "p": participants},
        )
    with engine.begin() as connection:  # real scores: the default profile applied as version 2
        rescoring.change_profile(
            connection, Profile(time_worst=Decimal(91)), dt.datetime.now(dt.UTC), False, 3600
        )
    with engine.begin() as connection:
        connection.execute(text("ANALYZE submissions"))
        connection.execute(text("ANALYZE score_history"))


def timed(engine, dry_run: bool) -> tuple[float, rescoring.Outcome]:
    with engine.connect() as connection:
        start = time.perf_counter()
        outcome = rescoring.change_profile(connection, NEW, dt.datetime.now(dt.UTC), dry_run, 3600)
        if dry_run:
            connection.rollback()
        else:
            connection.commit()
        return time.perf_counter() - start, outcome


def check(engine, sample: int, version: int) -> int:
    """Compare a random sample and every leading row with gpuq.scoring; returns rows checked."""
    table = Submission.__table__
    columns = [table.c.score, table.c.profile_version, *(table.c[m] for m in METRICS)]
    with engine.connect() as connection:
        rows = connection.execute(select(*columns).order_by(func.random()).limit(sample)).all()
        rows += connection.execute(select(*columns).where(table.c.leads).limit(sample)).all()
    for row in rows:
        expected = score(dict(zip(METRICS, row[2:], strict=True)), NEW).total
        if row.score != expected or row.profile_version != version:
            raise SystemExit(f"MISMATCH: {row.score} v{row.profile_version}, scoring module {expected}")
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--participants", type=int, default=2000)
    parser.add_argument("--sample", type=int, default=20_000)
    args = parser.parse_args()
    url = services.create_database()
    engine = make_engine(Settings(database_url=url, db_timeout=3600))
    try:
        migrate.upgrade(engine)
        start = time.perf_counter()
        fill(engine, args.rows, args.participants)
        print(f"filled {args.rows:,} rows in {time.perf_counter() - start:.1f} s")
        seconds, outcome = timed(engine, dry_run=True)
        print(f"dry run: {seconds:.1f} s ({outcome.rescored:,} rescored, {outcome.scores_changed:,} changed)")
        seconds, outcome = timed(engine, dry_run=False)
        print(f"applied: {seconds:.1f} s ({outcome.rescored:,} rescored, now version {outcome.version})")
        checked = check(engine, args.sample, outcome.version)
        print(f"checked {checked:,} rows against gpuq.scoring: all equal")
    finally:
        engine.dispose()
        services.drop_database(url)


if __name__ == "__main__":
    main()
