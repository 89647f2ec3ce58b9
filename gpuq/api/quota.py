"""GET /quota: the caller's limits, what remains, and when each resets (uses none of them)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from gpuq import ratelimit
from gpuq.api import auth

bp = Blueprint("quota", __name__)


@bp.get("/quota")
@ratelimit.exempt
def quota():
    limits = ratelimit.get_limits()
    address = ratelimit.client_address()
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
