"""The slot pool over HTTP (the service: gpuq.slots.service).

GET  /slots                       every slot's state, who is next in line, and (with a key) where you stand
GET  /slots/history               leases, newest first (paginated)
POST /slots/<name>/accept         the offered participant takes the slot (with a claim window)
POST /slots/<name>/decline        the offered participant turns the offer down
POST /slots/<name>/release        the holder gives it back
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from gpuq.api import auth, params, spec
from gpuq.api.context import runtime
from gpuq.api.params import HISTORY
from gpuq.slots.service import change_json

bp = Blueprint("slots", __name__)


@bp.get("/slots")
def get_slots() -> Response:
    return jsonify(runtime().slots.overview(auth.caller()))


@bp.get("/slots/history")
def slot_history() -> Response:
    limit, offset = HISTORY.read()
    leases, total = runtime().slots.history(offset, limit)
    return jsonify({"leases": leases, "total": total, "limit": limit, "offset": offset})


@bp.post("/slots/<name>/accept", defaults={"action": "accept"})
@bp.post("/slots/<name>/decline", defaults={"action": "decline"})
@bp.post("/slots/<name>/release", defaults={"action": "release"})
def act_on_slot(name: str, action: str) -> Response:
    """The offered participant accepts or declines; the holder releases."""
    return jsonify(change_json(runtime().slots.act_as_holder(name, auth.require_participant(), action)))


# Its routes in the OpenAPI document (gpuq.api.openapi assembles every module's).
OPERATIONS: spec.Operations = {
    ("/slots", "get"): {
        "operationId": "slots",
        "summary": "The slot pool: each slot's state and holder, who is next, where you stand",
        "tags": ["slots"],
        "security": [{}, {"bearer": []}],
        "responses": {
            "200": spec.json_response("SlotsOut", "The pool now."),
            "401": spec.UNAUTHORIZED,
            "429": spec.LIMITED,
            "503": spec.DATABASE_DOWN,
            "500": spec.SERVER_ERROR,
        },
    },
    ("/slots/history", "get"): {
        "operationId": "slotHistory",
        "summary": "Every lease, newest first",
        "tags": ["slots"],
        "parameters": params.HISTORY.openapi(),
        "responses": {
            "200": spec.json_response("SlotHistory", "One page of leases."),
            "400": spec.problem("A bad limit or offset."),
            "429": spec.LIMITED,
            "503": spec.DATABASE_DOWN,
            "500": spec.SERVER_ERROR,
        },
    },
    **{
        (f"/slots/{{name}}/{verb}", "post"): {
            "operationId": f"{verb}Slot",
            "summary": summary,
            "tags": ["slots"],
            "security": spec.BEARER,
            "parameters": [spec.SLOT],
            "responses": {
                "200": spec.json_response("SlotAction", "Done."),
                "401": spec.UNAUTHORIZED,
                "404": spec.problem(
                    "The caller has no such lease on this slot (someone else's looks the same)."
                ),
                "409": spec.problem("Already accepted (declining a held slot: release it)."),
                "422": spec.problem("Not a slot name."),
                "429": spec.LIMITED,
                "503": spec.DATABASE_DOWN,
                "500": spec.SERVER_ERROR,
            },
        }
        for verb, summary in (
            ("accept", "Accept the slot offered to you; the lease starts now"),
            ("decline", "Turn down the slot offered to you; it goes to the next in line"),
            ("release", "Give your slot back (or decline the offer)"),
        )
    },
}
