"""Request models (Pydantic v2, strict) and the translation of their errors.

Numbers arrive as Decimal (see body.py); strict mode refuses booleans,
strings and null for a number, and `extra="forbid"` refuses fields a client
may not set (`score`, `id`, `created_at`, ...). Metrics are kept to 4 decimal
places, rounded half-up, before scoring and storage: the stored value is the
scored value.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from gpuq.api.body import json_type
from gpuq.errors import FieldError, InvalidInput
from gpuq.store.models import MAX_COMPLETION_SECONDS

METRIC_QUANTUM = Decimal("0.0001")


def _four_places(value: Decimal) -> Decimal:
    return value.quantize(METRIC_QUANTUM, rounding=ROUND_HALF_UP)


Percent = Annotated[
    Decimal,
    Field(ge=0, le=100, allow_inf_nan=False, description="A percentage, 0 to 100."),
    AfterValidator(_four_places),
]
Seconds = Annotated[
    Decimal,
    Field(
        ge=METRIC_QUANTUM,
        le=MAX_COMPLETION_SECONDS,
        allow_inf_nan=False,
        description="Seconds the benchmark took, more than 0 and at most 86400.",
    ),
    AfterValidator(_four_places),
]


class SubmissionIn(BaseModel):
    """The body of POST /submit_qualification."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    gpu_utilization: Percent
    memory_usage: Percent
    power_efficiency: Percent
    completion_time: Seconds
    accuracy: Percent


def validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate `data` against `model`; raises InvalidInput (422) naming every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [_field_error(err) for err in exc.errors(include_url=False)]
        fields = ", ".join(sorted({e.field for e in errors}))
        raise InvalidInput(f"invalid fields: {fields}", errors) from None


def _field_error(err: Any) -> FieldError:
    field = ".".join(str(part) for part in err["loc"])
    kind = err["type"]
    if kind == "missing":
        message = "is required"
    elif kind == "extra_forbidden":
        message = "is not an accepted field"
    elif kind in ("is_instance_of", "decimal_type"):
        message = f"must be a number, got {json_type(err['input'])}"
    elif kind == "finite_number":
        message = "must be a finite number"
    else:
        message = err["msg"][0].lower() + err["msg"][1:]
    return FieldError(field, message)
