"""Admin commands: `gpuq db upgrade`, `gpuq db downgrade REV`, `gpuq db current`, `gpuq index rebuild`.

Also reachable as `python -m gpuq ...`. Reads `.env` and the environment like the server.
"""

from __future__ import annotations

import click
from dotenv import load_dotenv

from gpuq.config import Settings


def _settings() -> Settings:
    load_dotenv(".env")
    return Settings.from_env()


@click.group()
def main() -> None:
    """gpuq administration."""


@main.group()
def db() -> None:
    """Database schema migrations."""


@db.command()
def upgrade() -> None:
    """Apply every pending migration (safe to run on several hosts at once)."""
    from gpuq.store import migrate
    from gpuq.store.db import make_engine

    engine = make_engine(_settings())
    migrate.upgrade(engine)
    click.echo("database is at the newest migration")


@db.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Undo migrations down to REVISION ("base" removes every table)."""
    from gpuq.store import migrate
    from gpuq.store.db import make_engine

    migrate.downgrade(make_engine(_settings()), revision)
    click.echo(f"database downgraded to {revision}")


@db.command()
def current() -> None:
    """Say whether the database schema is up to date (exit status 1 when not)."""
    from gpuq.store import migrate
    from gpuq.store.db import make_engine

    if migrate.is_current(make_engine(_settings())):
        click.echo("up to date")
    else:
        click.echo("migrations pending: run `gpuq db upgrade`")
        raise SystemExit(1)


@main.group()
def index() -> None:
    """The Redis leaderboard index."""


@index.command()
def rebuild() -> None:
    """Rebuild the leaderboard index from the database now."""
    from gpuq.app import create_app
    from gpuq.leaderboard import RedisLeaderboard, get_leaderboard

    app = create_app(_settings())
    board = get_leaderboard(app)
    if not isinstance(board, RedisLeaderboard):
        click.echo("no Redis configured: the leaderboard is read from the database directly")
        return
    count = board.rebuild()
    if count is None:
        click.echo("another process is rebuilding the index right now; nothing done")
        raise SystemExit(1)
    click.echo(f"rebuilt: {count} entries")
