"""Column types that behave the same on PostgreSQL and SQLite.

Migrations import these, so their storage format must never change.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Float, Numeric
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class ExactDecimal(TypeDecorator[Decimal]):
    """A fixed-point number: NUMERIC(p, s) on PostgreSQL, REAL on SQLite.

    SQLite has no decimal type; a REAL keeps 15 significant digits, which is
    exact for the precisions used here (at most 12 digits), and keeps numeric
    comparison and ordering in CHECK constraints and ORDER BY. Values come back
    as Decimal quantised to the column's scale on both databases.
    """

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        if precision > 15:
            raise ValueError("ExactDecimal is exact on SQLite up to 15 digits")
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.quantum = Decimal(1).scaleb(-scale)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Float(asdecimal=False))
        return dialect.type_descriptor(self.impl_instance)

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return float(value)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        # repr() of a float is its shortest round-tripping decimal form.
        text = repr(value) if isinstance(value, float) else str(value)
        return Decimal(text).quantize(self.quantum)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware UTC value")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        moment: dt.datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC)
