"""The slot pool over HTTP (the service: gpuq.slots.service).

GET  /slots                       every slot's state, who is next in line, and (with a key) where you stand
GET  /slots/history               leases, newest first (paginated)
POST /slots/<name>/accept         the offered participant takes the slot (with a claim window)
POST /slots/<name>/release        the holder gives it back
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from gpuq.api import auth
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


@bp.post("/slots/<name>/accept")
def accept_slot(name: str) -> Response:
    return jsonify(change_json(runtime().slots.act_as_holder(name, auth.require_participant(), accept=True)))


@bp.post("/slots/<name>/release")
def release_slot(name: str) -> Response:
    return jsonify(change_json(runtime().slots.act_as_holder(name, auth.require_participant(), accept=False)))
