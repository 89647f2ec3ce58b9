"""Admin commands: `gpuq serve [--host H] [--port P] [--workers N]`,
`gpuq db upgrade|downgrade REV|current`, `gpuq index rebuild`,
`gpuq participants create NAME [--admin]`, `gpuq participants rotate-key NAME`.

Also reachable as `python -m gpuq ...`. Reads `.env` and the environment like the server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click
from dotenv import load_dotenv

from gpuq.config import Settings

if TYPE_CHECKING:
    from gpuq.participants import Registry


def _settings() -> Settings:
    load_dotenv(".env")
    return Settings.from_env()


@click.group()
def main() -> None:
    """gpuq administration."""


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def serve(context: click.Context) -> None:
    """Serve the API like `python app.py` (options: gpuq serve --help)."""
    import os
    import sys

    # gpuq.__main__ serves before importing anything; reached here, start it that way.
    os.execv(sys.executable, [sys.executable, "-m", "gpuq", "serve", *context.args])


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
    from gpuq.leaderboard.index import RedisLeaderboard
    from gpuq.runtime import build

    board = build(_settings()).board
    if not isinstance(board, RedisLeaderboard):
        click.echo("no Redis configured: the leaderboard is read from the database directly")
        return
    count = board.rebuild()
    if count is None:
        click.echo("another process is rebuilding the index right now; nothing done")
        raise SystemExit(1)
    click.echo(f"rebuilt: {count} entries")


@main.group(name="participants")
def participants_group() -> None:
    """Participants and their API keys (the first admin is created here)."""


@contextlib.contextmanager
def _registry() -> Iterator[Registry]:
    """The participants' registry on an up-to-date database, disposed of afterwards."""
    from gpuq.clock import utcnow
    from gpuq.participants import Registry
    from gpuq.store import migrate
    from gpuq.store.db import Database, make_engine

    engine = make_engine(_settings())
    try:
        if not migrate.is_current(engine):
            click.echo("migrations pending: run `gpuq db upgrade` first", err=True)
            raise SystemExit(1)
        yield Registry(Database(engine), utcnow)
    finally:
        engine.dispose()


def _cli_actor() -> str:
    """Who the audit trail names for a CLI change: cli:<the operating-system user>."""
    import getpass

    from gpuq.audit import CLI_ACTOR

    return f"{CLI_ACTOR}:{getpass.getuser()}"


@participants_group.command()
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the participant an admin.")
def create(name: str, admin: bool) -> None:
    """Create participant NAME and print their API key (shown this once only)."""
    from gpuq.errors import Conflict, InvalidInput

    try:
        with _registry() as registry:
            member, key = registry.create(name, is_admin=admin, actor=_cli_actor())
    except (Conflict, InvalidInput) as exc:
        message = exc.errors[0].message if isinstance(exc, InvalidInput) and exc.errors else exc.detail
        click.echo(f"cannot create {name!r}: {message}", err=True)
        raise SystemExit(1) from None
    role = "admin" if admin else "participant"
    click.echo(f"created {role} {member.name}; API key (shown once, keep it safe):", err=True)
    click.echo(key)


@participants_group.command(name="rotate-key")
@click.argument("name")
def rotate_key(name: str) -> None:
    """Revoke NAME's API key and print a new one (for a lost key)."""
    from gpuq.errors import NotFound

    try:
        with _registry() as registry:
            member, key, _revoked = registry.change_key(name, _cli_actor(), rotate=True)
    except NotFound as exc:
        click.echo(exc.detail, err=True)
        raise SystemExit(1) from None
    click.echo(f"new API key for {member.name} (the old one no longer works):", err=True)
    click.echo(key)
