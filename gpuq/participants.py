"""Participants and their API keys.

Names: NFKC-normalised, then 3-32 characters of ASCII letters, digits, "-"
and "_", unique case-insensitively. Keeping to ASCII after normalisation is
what refuses look-alikes: a Cyrillic "а" or a Greek "ο" is not allowed, while
a full-width "Ａ" normalises to "A"; control and invisible characters are
never allowed.

API keys look like `gpuq_3f9a1c0b7d2e_<43 random characters>`:

* `gpuq_` makes a key recognisable (secret scanners, logs);
* the next 12 hex digits are the key id, public, stored as is, shown as the
  key's prefix and used to find its row;
* the rest is 256 random bits.

Only the SHA-256 of the whole key is stored (a slow password hash buys
nothing against 256 random bits and would cost every request), and it is
compared with `hmac.compare_digest`. A participant has at most one live key:
rotating revokes the old one in the same transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import secrets
import unicodedata

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from gpuq import audit
from gpuq.clock import Clock
from gpuq.errors import Conflict, FieldError, InvalidInput, NotFound
from gpuq.store import tables
from gpuq.store.db import Database

KEY_PREFIX = "gpuq_"
KEY_ID_LENGTH = 12
_NAME = re.compile(r"[A-Za-z0-9_-]{3,32}")
_KEY = re.compile(r"gpuq_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()

PARTICIPANTS = tables.PARTICIPANTS
KEYS = tables.API_KEYS


@dataclasses.dataclass(frozen=True)
class Member:
    """A participant as the rest of the service sees it."""

    id: int
    name: str
    is_admin: bool
    disqualified_at: dt.datetime | None
    disqualify_reason: str | None
    created_at: dt.datetime

    @property
    def disqualified(self) -> bool:
        return self.disqualified_at is not None


MEMBER_COLUMNS = (
    PARTICIPANTS.c.id,
    PARTICIPANTS.c.name,
    PARTICIPANTS.c.is_admin,
    PARTICIPANTS.c.disqualified_at,
    PARTICIPANTS.c.disqualify_reason,
    PARTICIPANTS.c.created_at,
)


def normalise_name(raw: object, field: str = "name") -> str:
    """The name as stored; raises InvalidInput (422) naming `field` when it is not acceptable."""
    if not isinstance(raw, str):
        raise InvalidInput(f"invalid fields: {field}", [FieldError(field, "must be a string")])
    name = unicodedata.normalize("NFKC", raw)
    if _NAME.fullmatch(name) is None:
        message = (
            "must be 3 to 32 characters of letters A-Z and a-z, digits, '-' and '_' "
            "(after Unicode NFKC normalisation)"
        )
        raise InvalidInput(f"invalid fields: {field}", [FieldError(field, message)])
    return name


def name_key(name: str) -> str:
    """What uniqueness is decided on: the normalised name in lower case."""
    return name.lower()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its id."""
    key_id = secrets.token_hex(KEY_ID_LENGTH // 2)
    return f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}", key_id


def key_prefix(key_id: str) -> str:
    """How a key is shown once its secret part is gone."""
    return f"{KEY_PREFIX}{key_id}"


def prefix_of(key: str) -> str:
    """The shown prefix of a whole key (its random part may itself hold "_")."""
    return key[: len(KEY_PREFIX) + KEY_ID_LENGTH]


def create(connection: Connection, name: str, is_admin: bool, moment: dt.datetime) -> tuple[Member, str]:
    """Register `name` (already normalised) with a first key; returns the participant and the key.

    Raises Conflict when the name is taken (in any letter case). Does not commit.
    """
    try:
        with connection.begin_nested():
            participant_id = connection.execute(
                insert(PARTICIPANTS)
                .values(name=name, name_key=name_key(name), is_admin=is_admin, created_at=moment)
                .returning(PARTICIPANTS.c.id)
            ).scalar_one()
    except IntegrityError:
        raise Conflict(f"the name {name!r} is already taken") from None
    key = _issue_key(connection, participant_id, moment)
    return Member(participant_id, name, is_admin, None, None, moment), key


def _issue_key(connection: Connection, participant_id: int, moment: dt.datetime) -> str:
    key, key_id = new_key()
    connection.execute(
        insert(KEYS).values(
            participant_id=participant_id, key_id=key_id, key_hash=hash_key(key), created_at=moment
        )
    )
    return key


def revoke_keys(connection: Connection, participant_id: int, moment: dt.datetime) -> int:
    """Revoke the participant's live key; returns how many were revoked (0 or 1). Does not commit."""
    return connection.execute(
        update(KEYS)
        .where(KEYS.c.participant_id == participant_id, KEYS.c.revoked_at.is_(None))
        .values(revoked_at=moment)
    ).rowcount


def live_key_prefix(connection: Connection, participant_id: int) -> str | None:
    key_id = connection.scalar(
        select(KEYS.c.key_id).where(KEYS.c.participant_id == participant_id, KEYS.c.revoked_at.is_(None))
    )
    return None if key_id is None else key_prefix(key_id)


_BY_KEY_ID = (
    select(KEYS.c.key_hash, *MEMBER_COLUMNS)
    .join(PARTICIPANTS, PARTICIPANTS.c.id == KEYS.c.participant_id)
    .where(KEYS.c.revoked_at.is_(None))
)


def authenticate(connection: Connection, key: str) -> Member | None:
    """The participant whose live key `key` is, or None (malformed, unknown, revoked or wrong)."""
    match = _KEY.fullmatch(key)
    row = None
    if match is not None:
        row = connection.execute(_BY_KEY_ID.where(KEYS.c.key_id == match.group(1))).first()
    # Hash and compare in every case, so that timing says nothing about which check failed.
    stored = row.key_hash if row is not None else _DUMMY_HASH
    if not hmac.compare_digest(hash_key(key), stored) or row is None:
        return None
    return Member(*row[1:])


def get(connection: Connection, name: str) -> Member:
    """The participant called `name` (any letter case); raises NotFound."""
    wanted = name_key(unicodedata.normalize("NFKC", name))
    row = connection.execute(select(*MEMBER_COLUMNS).where(PARTICIPANTS.c.name_key == wanted)).first()
    if row is None:
        raise NotFound(f"no participant called {name!r}")
    return Member(*row)


class Registry:
    """Creating participants and changing their keys, each with its audit record: the one
    path for the API and the CLI."""

    def __init__(self, database: Database, clock: Clock):
        self._database = database
        self._clock = clock

    def create(self, raw_name: object, is_admin: bool, actor: str | None) -> tuple[Member, str]:
        """Register `raw_name` (normalised here) with a first key; returns the participant
        and the key. A creation by someone (`actor`: an admin, the CLI) is audited; a
        self-registration is not. Raises InvalidInput or Conflict."""
        name = normalise_name(raw_name)
        moment = self._clock()
        with self._database.connect() as connection:
            member, key = create(connection, name, is_admin=is_admin, moment=moment)
            if actor is not None:
                audit.record(
                    connection,
                    actor,
                    "participant.create",
                    f"participant:{name}",
                    None,
                    {"is_admin": is_admin},
                    None,
                    moment,
                )
            connection.commit()
        return member, key

    def change_key(self, name: str, actor: str, rotate: bool) -> tuple[Member, str | None, int]:
        """Rotate (returning the new key) or revoke `name`'s key, audited as done by `actor`;
        returns (participant, new key or None, how many keys were revoked). Raises NotFound."""
        moment = self._clock()
        with self._database.connect() as connection:
            member = get(connection, name)
            revoked = revoke_keys(connection, member.id, moment)
            key = _issue_key(connection, member.id, moment) if rotate else None
            action = "key.rotate" if rotate else "key.revoke"
            audit.record(connection, actor, action, f"participant:{member.name}", None, None, None, moment)
            connection.commit()
        return member, key, revoked
