"""Settings: every knob of the service, read from the environment in one place.

`Settings.from_env()` reads `os.environ` (after `.env` has been loaded by the
entry point); tests build `Settings(...)` directly. Nothing here connects to
anything.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

from limits import parse_many

from gpuq.evidence.flags import CODES as FLAG_CODES

SLOT_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
"""What a slot's name may be."""
INSTANCE_DIR = Path("instance")
"""Where the embedded default keeps its SQLite file: `instance/` under the directory the
service is started from (a checkout or anywhere an installed package runs)."""


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; the message names it."""


def normalise_database_url(url: str) -> str:
    """Map `postgres://` and `postgresql://` to the psycopg 3 driver.

    The specification's `.env` example uses a plain `postgresql://` URL; with
    SQLAlchemy that would ask for psycopg2, which is not installed.
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Typed configuration. Field docs name the environment variable."""

    database_url: str = ""
    """DATABASE_URL; empty means SQLite under `instance/`."""
    redis_url: str = ""
    """REDIS_URL; empty means in-process rate-limit counters and a database-backed index."""
    secret_key: str = "dev-only-not-secret"
    """FLASK_SECRET_KEY."""
    submit_limit: str = "10 per hour"
    """GPUQ_SUBMIT_LIMIT: accepted anonymous submissions per client address."""
    daily_limit: str = "200 per day"
    """GPUQ_DAILY_LIMIT: requests over all limited routes together, per client address for
    anonymous requests and per participant for requests with a valid API key."""
    trusted_proxies: int = 0
    """GPUQ_TRUSTED_PROXIES: how many X-Forwarded-For hops to trust (0: use the socket peer)."""
    auto_migrate: bool = True
    """GPUQ_AUTO_MIGRATE: apply pending migrations when `python app.py` starts."""
    max_body_bytes: int = 16 * 1024
    """GPUQ_MAX_BODY_BYTES: larger request bodies get 413."""
    max_evidence_bytes: int = 4 * 1024 * 1024
    """GPUQ_MAX_EVIDENCE_BYTES: the body limit of a run's evidence (its samples)."""
    run_ticket_minutes: float = 60.0
    """GPUQ_RUN_TICKET_MINUTES: how long a run ticket may be used after it is issued."""
    time_best_seconds: Decimal = Decimal("0")
    """GPUQ_TIME_BEST_SECONDS: completion time worth 100 % of its weight."""
    time_worst_seconds: Decimal = Decimal("90")
    """GPUQ_TIME_WORST_SECONDS: completion time worth 0 % of its weight."""
    redis_timeout: float = 0.5
    """GPUQ_REDIS_TIMEOUT: seconds before a Redis call counts as failed."""
    redis_pool_size: int = 64
    """GPUQ_REDIS_POOL_SIZE: Redis connections per worker process."""
    redis_pool_wait_seconds: float = 5.0
    """GPUQ_REDIS_POOL_WAIT_SECONDS: how long a request waits for a free pooled Redis
    connection before that counts as a Redis failure (see gpuq.store.redis)."""
    redis_retry_seconds: float = 5.0
    """GPUQ_REDIS_RETRY_SECONDS: after a Redis failure, how long a worker uses its fallbacks
    without asking Redis (then it tries again)."""
    db_timeout: float = 2.0
    """GPUQ_DB_TIMEOUT: seconds to connect, wait for a pooled connection, or run a statement."""
    db_pool_size: int = 20
    """GPUQ_DB_POOL_SIZE: database connections per worker process (PostgreSQL)."""
    redis_prefix: str = "gpuq"
    """GPUQ_REDIS_PREFIX: namespace for every Redis key (several deployments can share one Redis)."""
    index_check_seconds: float = 10.0
    """GPUQ_INDEX_CHECK_SECONDS: how often a worker compares the Redis index with the database."""
    idempotency_abandon_seconds: float = 60.0
    """GPUQ_IDEMPOTENCY_ABANDON_SECONDS: after this long an unfinished Idempotency-Key claim
    (its worker died) may be taken over by a retry; keep it above the longest request."""
    board_size: int = 10
    """GPUQ_BOARD_SIZE: how many leaders the live stream and the board page show."""
    streams_per_address: int = 5
    """GPUQ_STREAMS_PER_ADDRESS: open live streams per client address (more get 429)."""
    streams_per_worker: int = 2000
    """GPUQ_STREAMS_PER_WORKER: open live streams per worker process (more get 503)."""
    connections_per_address: int = 256
    """GPUQ_CONNECTIONS_PER_ADDRESS: open connections per client socket address and worker
    process (more are answered 429 and closed); 0 means no cap. Behind a reverse proxy
    every connection comes from the proxy: set 0 there and cap at the proxy."""
    body_timeout_seconds: float = 10.0
    """GPUQ_BODY_TIMEOUT_SECONDS: a request body must arrive within this long (else 408)."""
    stream_max_seconds: float = 3600.0
    """GPUQ_STREAM_MAX_SECONDS: a live stream is closed after this long (clients reconnect)."""
    stream_heartbeat_seconds: float = 15.0
    """GPUQ_STREAM_HEARTBEAT_SECONDS: a comment line this often keeps idle streams open."""
    ratelimit_enabled: bool = True
    """GPUQ_RATELIMIT_ENABLED: off only for benchmarks and tests."""
    participant_limit: str = "10 per hour"
    """GPUQ_PARTICIPANT_LIMIT: accepted submissions per participant (API key), over all
    addresses together (keyed submissions do not use GPUQ_SUBMIT_LIMIT)."""
    keyed_address_limit: str = ""
    """GPUQ_KEYED_ADDRESS_LIMIT: accepted submissions with an API key per client address, over
    every participant together (a ceiling against farming keys); empty means none."""
    open_registration: bool = True
    """GPUQ_OPEN_REGISTRATION: anyone may register with POST /participants; when false
    only admins create participants."""
    allow_anonymous: bool = True
    """GPUQ_ALLOW_ANONYMOUS: accept submissions without an API key."""
    slots: str = "gpu-0"
    """GPUQ_SLOTS: the slot pool's names, comma-separated (seeds a new database; then admins
    change the pool at run time)."""
    slot_hours: float = 24.0
    """GPUQ_SLOT_HOURS: how long a lease lasts (seeds a new database)."""
    qualifying_score: Decimal = Decimal("0")
    """GPUQ_QUALIFYING_SCORE: the best score a participant needs to be eligible (seeds a new database)."""
    slot_cooldown_hours: str = ""
    """GPUQ_SLOT_COOLDOWN_HOURS: after a lease ends, how long before the participant may hold
    another; empty means one lease length (seeds a new database)."""
    slot_claim_minutes: float = 0.0
    """GPUQ_SLOT_CLAIM_MINUTES: 0 grants a free slot at once; otherwise it is offered and
    passes to the next in line if not accepted in time (seeds a new database)."""
    slots_measured_only: bool = False
    """GPUQ_SLOTS_MEASURED_ONLY: only measured results (a run's evidence, gpuq-agent) put a
    participant in line for a slot; self-reported ones never do (seeds a new database)."""
    self_reported_ranked: bool = True
    """GPUQ_SELF_REPORTED_RANKED: self-reported results (the five numbers) are ranked; when
    false they are stored, shown to their owner, and kept off the leaderboard (seeds a new
    database)."""
    hold_flags: str = ""
    """GPUQ_HOLD_FLAGS: comma-separated plausibility flags (README: Measured results) that hold
    a result for review: stored, not ranked until an admin accepts it (seeds a new database)."""
    allow_test_backends: bool = False
    """GPUQ_ALLOW_TEST_BACKENDS: evidence from gpuq-agent's fake or replay backend passes the
    checks (for trying the agent without a GPU); otherwise it is stored unranked."""
    slot_sweep_seconds: float = 5.0
    """GPUQ_SLOT_SWEEP_SECONDS: how often each worker ends expired leases and hands out free slots."""
    admin_timeout: float = 600.0
    """GPUQ_ADMIN_TIMEOUT: seconds a statement of an admin change (rescoring all
    submissions) may run; the request path keeps GPUQ_DB_TIMEOUT."""
    metrics_token: str = dataclasses.field(default="", repr=False)  # a secret: never in a repr
    """GPUQ_METRICS_TOKEN: when set, GET /metrics answers only requests that carry
    `Authorization: Bearer <this token>` (from any address; others get 401). When empty,
    GET /metrics answers only clients on this host, a loopback address (127.0.0.0/8, ::1),
    and refuses others with 403. Behind a reverse proxy on the same host every request
    comes from loopback unless GPUQ_TRUSTED_PROXIES is set: there, set a token (or have the
    proxy refuse /metrics)."""
    log_format: str = "json"
    """GPUQ_LOG_FORMAT: how the server writes its log lines on stdout: `json` (one JSON
    object per line, the default) or `text` (plain lines for a person at a terminal;
    `make run` chooses it). See gpuq.logs for the fields."""

    def __post_init__(self) -> None:
        for name in ("submit_limit", "daily_limit", "participant_limit", "keyed_address_limit"):
            value = getattr(self, name)
            if name == "keyed_address_limit" and not value:
                continue
            try:
                parse_many(value)
            except ValueError as exc:
                raise ConfigError(f"{_ENV_NAMES[name]}={value!r} is not a rate limit: {exc}") from exc
        if self.time_worst_seconds <= self.time_best_seconds:
            raise ConfigError("GPUQ_TIME_WORST_SECONDS must be greater than GPUQ_TIME_BEST_SECONDS")
        if self.db_pool_size < 1:
            raise ConfigError("GPUQ_DB_POOL_SIZE must be at least 1")
        if self.max_evidence_bytes < self.max_body_bytes:
            raise ConfigError("GPUQ_MAX_EVIDENCE_BYTES must be at least GPUQ_MAX_BODY_BYTES")
        if not self.run_ticket_minutes > 0:
            raise ConfigError("GPUQ_RUN_TICKET_MINUTES must be more than 0")
        if self.redis_pool_size < 1:
            raise ConfigError("GPUQ_REDIS_POOL_SIZE must be at least 1")
        if self.redis_pool_wait_seconds <= 0:
            raise ConfigError("GPUQ_REDIS_POOL_WAIT_SECONDS must be more than 0")
        if not 1 <= self.board_size <= 100:
            raise ConfigError("GPUQ_BOARD_SIZE must be from 1 to 100")
        if self.connections_per_address < 0:
            raise ConfigError("GPUQ_CONNECTIONS_PER_ADDRESS must be 0 or more")
        if self.body_timeout_seconds <= 0:
            raise ConfigError("GPUQ_BODY_TIMEOUT_SECONDS must be more than 0")
        if self.log_format not in ("json", "text"):
            raise ConfigError("GPUQ_LOG_FORMAT must be json or text")
        if self.trusted_proxies < 0:
            raise ConfigError("GPUQ_TRUSTED_PROXIES must be 0 or more")
        names = self.slot_names
        if len(set(names)) != len(names) or not all(SLOT_NAME.fullmatch(n) for n in names):
            raise ConfigError(
                "GPUQ_SLOTS must be distinct names of 1-32 letters, digits, '-' or '_', comma-separated"
            )
        unknown = sorted(set(self.hold_flag_codes) - set(FLAG_CODES))
        if unknown:
            raise ConfigError(
                f"GPUQ_HOLD_FLAGS: unknown flags {', '.join(unknown)}; known: {', '.join(FLAG_CODES)}"
            )
        if not self.slot_hours > 0:
            raise ConfigError("GPUQ_SLOT_HOURS must be more than 0")
        if not Decimal(0) <= self.qualifying_score <= Decimal(100):
            raise ConfigError("GPUQ_QUALIFYING_SCORE must be from 0 to 100")
        try:
            self.slot_cooldown_seconds  # noqa: B018 - validates the setting
        except ValueError:
            raise ConfigError("GPUQ_SLOT_COOLDOWN_HOURS must be a number of hours, 0 or more") from None

    @property
    def hold_flag_codes(self) -> list[str]:
        return [code.strip() for code in self.hold_flags.split(",") if code.strip()]

    @property
    def slot_names(self) -> list[str]:
        return [name.strip() for name in self.slots.split(",") if name.strip()]

    @property
    def slot_cooldown_seconds(self) -> int:
        """The cooldown in whole seconds (one lease length when not set); raises ValueError."""
        if self.slot_cooldown_hours.strip() == "":
            return round(self.slot_hours * 3600)
        hours = float(self.slot_cooldown_hours)
        if not 0 <= hours < float("inf"):
            raise ValueError("not a number of hours")
        return round(hours * 3600)

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL SQLAlchemy should use (SQLite file when none is set)."""
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{(INSTANCE_DIR / 'gpuq.sqlite3').resolve()}"

    @property
    def embedded(self) -> bool:
        """True when rate-limit counters live in the process: then one worker only."""
        return not self.redis_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables; raises ConfigError naming a bad one."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            var = _ENV_NAMES[field.name]
            if var not in env or env[var] == "":
                continue
            raw = env[var]
            try:
                kwargs[field.name] = _convert(field.type, raw)
            except (ValueError, ArithmeticError) as exc:
                raise ConfigError(f"{var}={raw!r}: {exc}") from exc
        # Each value was converted to its field's type by _convert, which mypy cannot follow.
        return cls(**kwargs)  # type: ignore[arg-type]


_ENV_NAMES = {
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "secret_key": "FLASK_SECRET_KEY",
    "submit_limit": "GPUQ_SUBMIT_LIMIT",
    "daily_limit": "GPUQ_DAILY_LIMIT",
    "trusted_proxies": "GPUQ_TRUSTED_PROXIES",
    "auto_migrate": "GPUQ_AUTO_MIGRATE",
    "max_body_bytes": "GPUQ_MAX_BODY_BYTES",
    "time_best_seconds": "GPUQ_TIME_BEST_SECONDS",
    "time_worst_seconds": "GPUQ_TIME_WORST_SECONDS",
    "max_evidence_bytes": "GPUQ_MAX_EVIDENCE_BYTES",
    "run_ticket_minutes": "GPUQ_RUN_TICKET_MINUTES",
    "redis_timeout": "GPUQ_REDIS_TIMEOUT",
    "redis_pool_size": "GPUQ_REDIS_POOL_SIZE",
    "redis_pool_wait_seconds": "GPUQ_REDIS_POOL_WAIT_SECONDS",
    "redis_retry_seconds": "GPUQ_REDIS_RETRY_SECONDS",
    "db_timeout": "GPUQ_DB_TIMEOUT",
    "db_pool_size": "GPUQ_DB_POOL_SIZE",
    "redis_prefix": "GPUQ_REDIS_PREFIX",
    "index_check_seconds": "GPUQ_INDEX_CHECK_SECONDS",
    "idempotency_abandon_seconds": "GPUQ_IDEMPOTENCY_ABANDON_SECONDS",
    "board_size": "GPUQ_BOARD_SIZE",
    "streams_per_address": "GPUQ_STREAMS_PER_ADDRESS",
    "streams_per_worker": "GPUQ_STREAMS_PER_WORKER",
    "stream_max_seconds": "GPUQ_STREAM_MAX_SECONDS",
    "connections_per_address": "GPUQ_CONNECTIONS_PER_ADDRESS",
    "body_timeout_seconds": "GPUQ_BODY_TIMEOUT_SECONDS",
    "stream_heartbeat_seconds": "GPUQ_STREAM_HEARTBEAT_SECONDS",
    "ratelimit_enabled": "GPUQ_RATELIMIT_ENABLED",
    "participant_limit": "GPUQ_PARTICIPANT_LIMIT",
    "keyed_address_limit": "GPUQ_KEYED_ADDRESS_LIMIT",
    "open_registration": "GPUQ_OPEN_REGISTRATION",
    "allow_anonymous": "GPUQ_ALLOW_ANONYMOUS",
    "admin_timeout": "GPUQ_ADMIN_TIMEOUT",
    "slots": "GPUQ_SLOTS",
    "slot_hours": "GPUQ_SLOT_HOURS",
    "qualifying_score": "GPUQ_QUALIFYING_SCORE",
    "slots_measured_only": "GPUQ_SLOTS_MEASURED_ONLY",
    "self_reported_ranked": "GPUQ_SELF_REPORTED_RANKED",
    "hold_flags": "GPUQ_HOLD_FLAGS",
    "allow_test_backends": "GPUQ_ALLOW_TEST_BACKENDS",
    "slot_cooldown_hours": "GPUQ_SLOT_COOLDOWN_HOURS",
    "slot_claim_minutes": "GPUQ_SLOT_CLAIM_MINUTES",
    "slot_sweep_seconds": "GPUQ_SLOT_SWEEP_SECONDS",
    "metrics_token": "GPUQ_METRICS_TOKEN",
    "log_format": "GPUQ_LOG_FORMAT",
}


def _convert(type_name: object, raw: str) -> object:
    """Turn an environment string into the field's type (annotations are strings here)."""
    if type_name == "bool":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true/false or 1/0")
    if type_name == "int":
        return int(raw)
    if type_name == "float":
        seconds = float(raw)
        if not seconds >= 0 or seconds == float("inf"):
            raise ValueError("expected a finite number of seconds, 0 or more")
        return seconds
    if type_name == "Decimal":
        number = Decimal(raw)
        if not number.is_finite():
            raise ValueError("expected a finite number")
        return number
    return raw
