"""GET /quota: the caller's limits, what remains, and when each resets (uses none of them)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from gpuq.api import auth, spec
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


# Its routes in the OpenAPI document (gpuq.api.openapi assembles every module's).
OPERATIONS: spec.Operations = {
    ("/quota", "get"): {
        "operationId": "quota",
        "summary": "The caller's limits, what remains of them, and when they reset",
        "tags": ["service"],
        "security": [{}, {"bearer": []}],
        "responses": {
            "200": spec.json_response("Quota", "The caller's quota (reading it uses none)."),
            "401": spec.UNAUTHORIZED,
            "500": spec.SERVER_ERROR,
        },
    },
}
