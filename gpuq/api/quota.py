"""GET /quota: the caller's limits, what remains, and when each resets (uses none of them)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from gpuq.api import auth
from gpuq.api.context import runtime
from gpuq.api.limits import client_address, exempt

bp = Blueprint("quota", __name__)


@bp.get("/quota")
@exempt
def quota() -> Response:
    limits = runtime().limits
    address = client_address()
    member = auth.caller()
    return jsonify(
        {
            "address": address,
            "participant": None if member is None else member.name,
            "enabled": limits.enabled,
            "limits": [
                {
                    "scope": scope,
                    "limit": str(item),
                    "amount": usage.limit,
                    "remaining": usage.remaining,
                    "reset_at": usage.reset_at,
                }
                for scope, item, usage in (
                    limits.usage(address, None if member is None else member.id) if limits.enabled else []
                )
            ],
        }
    )
