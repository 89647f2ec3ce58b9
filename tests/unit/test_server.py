"""Start-up decisions of `python app.py`: arguments, worker count, what it says."""

from __future__ import annotations

from gpuq.config import Settings
from gpuq.server import describe, gunicorn_options, parse_args, worker_count


def test_arguments_default_to_localhost_5000():
    args = parse_args([], {})
    assert (args.host, args.port, args.workers) == ("127.0.0.1", 5000, None)


def test_environment_sets_the_defaults_and_flags_win():
    env = {"HOST": "0.0.0.0", "PORT": "8080", "WEB_CONCURRENCY": "3"}
    assert (parse_args([], env).host, parse_args([], env).port, parse_args([], env).workers) == (
        "0.0.0.0",
        8080,
        3,
    )
    args = parse_args(["--port", "9000", "--workers", "5"], env)
    assert (args.port, args.workers) == (9000, 5)


def test_embedded_mode_runs_exactly_one_worker():
    assert worker_count(8, Settings()) == 1
    assert worker_count(None, Settings()) == 1


def test_with_redis_the_requested_or_cpu_count_of_workers():
    settings = Settings(redis_url="redis://localhost:6379/0")
    assert worker_count(4, settings) == 4
    assert worker_count(None, settings) >= 1


def test_description_hides_passwords():
    text = describe(
        Settings(database_url="postgresql://gpuq:s3cret@db/gpuq", redis_url="redis://:pw@cache:6379/0")
    )
    assert "s3cret" not in text and "pw@" not in text
    assert "embedded mode" in describe(Settings())


def test_a_worker_takes_more_connections_than_its_stream_cap():
    """Else, with every stream slot taken, the worker could not even accept the request its
    503 answers, and the JSON API would hang."""
    for cap in (1, 2000, 5000):
        options = gunicorn_options("127.0.0.1", 5000, 2, Settings(streams_per_worker=cap))
        assert options["worker_connections"] >= cap + 1000
