"""Everything one app runs on, built once from the settings: stores, services, their state.

`build(settings, clock)` creates the engine, the Redis client, the leaderboard,
the limits, the event bus and the services, each given its dependencies
explicitly; nothing connects until first used. The app factory keeps the result
under one `app.extensions` key; handlers reach it through
`gpuq.api.context.runtime()`, the CLI and tests call `build` themselves.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading

import redis
from sqlalchemy import Connection

from gpuq.clock import Clock, utcnow
from gpuq.config import Settings
from gpuq.leaderboard import Leaderboard
from gpuq.leaderboard.gpus import GpuBoards
from gpuq.leaderboard.index import make_leaderboard
from gpuq.live.board import Summaries
from gpuq.live.bus import EventBus, make_bus
from gpuq.live.caps import StreamCaps
from gpuq.moderation import ModerationService
from gpuq.participants import Registry
from gpuq.ratelimit import History, RateLimits
from gpuq.slots.service import SlotService
from gpuq.store import db
from gpuq.store import redis as redis_store
from gpuq.store.db import Database
from gpuq.store.redis import Breaker
from gpuq.submissions import store
from gpuq.submissions.profiles import ProfileCache
from gpuq.submissions.rescoring import ScoringService
from gpuq.submissions.service import SubmissionService


@dataclasses.dataclass(frozen=True)
class Runtime:
    settings: Settings
    clock: Clock
    database: Database
    redis: redis.Redis | None
    board: Leaderboard
    gpus: GpuBoards
    profiles: ProfileCache
    limits: RateLimits
    bus: EventBus
    stream_caps: StreamCaps
    summaries: Summaries
    slots: SlotService
    submissions: SubmissionService
    scoring: ScoringService
    moderation: ModerationService
    participants: Registry
    draining: threading.Event = dataclasses.field(default_factory=threading.Event)
    """Set when this worker has been told to stop: /readyz then says so."""


def _history_of(database: Database) -> History:
    """The submission limits' truth: the times of stored submissions (gpuq.ratelimit)."""

    def history(
        scope: str, who: str, since: dt.datetime, limit: int, connection: Connection | None
    ) -> list[dt.datetime]:
        if connection is not None:
            return store.accepted_times(connection, scope, who, since, limit)
        with database.autocommit() as own:
            return store.accepted_times(own, scope, who, since, limit)

    return history


def build(settings: Settings, clock: Clock = utcnow) -> Runtime:
    """Everything for `settings`; `clock` is "now" for every service (tests pass their own;
    with the default, slot leases follow the database's clock)."""
    database = Database(db.make_engine(settings))
    client = redis_store.make_client(settings) if settings.redis_url else None
    breaker = Breaker(settings.redis_retry_seconds)  # one memory of Redis outages per worker
    board = make_leaderboard(settings, client, database.autocommit, breaker)
    profiles = ProfileCache.seeded_by(database, settings, clock)
    limits = RateLimits(settings, client, breaker, _history_of(database), clock)
    bus = make_bus(settings, client, breaker)
    slots = SlotService(database, bus.publish, settings, None if clock is utcnow else clock)
    return Runtime(
        settings=settings,
        clock=clock,
        database=database,
        redis=client,
        board=board,
        gpus=GpuBoards(database.autocommit),
        profiles=profiles,
        limits=limits,
        bus=bus,
        stream_caps=StreamCaps(settings, client, breaker),
        summaries=Summaries(),
        slots=slots,
        submissions=SubmissionService(
            database=database,
            profiles=profiles,
            board=board,
            limits=limits,
            bus=bus,
            slots=slots,
            settings=settings,
            clock=clock,
        ),
        scoring=ScoringService(
            database=database,
            profiles=profiles,
            board=board,
            slots=slots,
            admin_timeout=settings.admin_timeout,
            clock=clock,
        ),
        moderation=ModerationService(database=database, board=board, slots=slots, clock=clock),
        participants=Registry(database, clock),
    )
