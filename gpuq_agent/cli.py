"""`gpuq-agent`: the participant's command line (`gpuq-agent --help` lists the commands).

The server is GPUQ_SERVER (default http://localhost:5000) or --server. The API key is
GPUQ_KEY, else the file `gpuq-agent login` wrote ($XDG_CONFIG_HOME/gpuq/key, by
default ~/.config/gpuq/key, readable by its owner only). `--json` prints the server's
answers as JSON, for scripts. Exit status: 0 done, 1 refused by the server or the
benchmark failed a check, 2 a usage or local problem (no key, no NVML, no command),
3 the server could not be reached. Before the evidence of a run is sent it is kept in
$XDG_CACHE_HOME/gpuq/runs/ (by default ~/.cache/gpuq/runs/), so a run whose evidence
could not be delivered is sent again with `gpuq-agent resubmit FILE`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpuq_agent import AGENT, measure
from gpuq_agent.backends import BackendError, open_device
from gpuq_agent.client import ApiError, Client

DEFAULT_SERVER = "http://localhost:5000"


def key_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gpuq" / "key"


def stored_key() -> str | None:
    if os.environ.get("GPUQ_KEY"):
        return os.environ["GPUQ_KEY"].strip()
    try:
        return key_file().read_text().strip() or None
    except OSError:
        return None


def save_key(key: str) -> Path:
    """Write the key to key_file(), readable and writable by its owner only."""
    path = key_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(key + "\n")
    os.chmod(path, 0o600)  # an existing file keeps its old mode through os.open
    return path


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="gpuq-agent", description="Measure, submit and follow gpuq results.")
    top.add_argument("--server", default=os.environ.get("GPUQ_SERVER", DEFAULT_SERVER))
    top.add_argument("--json", action="store_true", help="print the server's answers as JSON")
    commands = top.add_subparsers(dest="command", required=True)
    login = commands.add_parser("login", help="check an API key and keep it for later commands")
    login.add_argument("--key", help="the key (asked for when absent; GPUQ_KEY also works)")
    run = commands.add_parser("run", help="run a benchmark while measuring the GPU, then submit the evidence")
    run.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU (default 0)")
    run.add_argument(
        "--backend",
        default=os.environ.get("GPUQ_AGENT_BACKEND", "nvml"),
        help="nvml (default), fake (a scripted GPU) or replay:<trace file>",
    )
    run.add_argument("--rate", type=float, default=10.0, help="samples per second (default 10)")
    run.add_argument("--record-trace", type=Path, help="also write the raw samples to this file")
    run.add_argument("benchmark", nargs=argparse.REMAINDER, help="-- the benchmark command")
    submit = commands.add_parser("submit", help="submit five self-reported metrics from a JSON file")
    submit.add_argument("file", type=Path)
    resubmit = commands.add_parser("resubmit", help="send a kept run's evidence again (~/.cache/gpuq/runs/)")
    resubmit.add_argument("file", type=Path)
    commands.add_parser("status", help="your participant record: best score, rank, submissions")
    commands.add_parser("quota", help="your limits and what is left of them")
    commands.add_parser("slots", help="the GPU slot pool and your place in line")
    accept = commands.add_parser("accept", help="accept the slot offered to you")
    accept.add_argument("slot")
    decline = commands.add_parser("decline", help="turn down the slot offered to you")
    decline.add_argument("slot")
    watch = commands.add_parser("watch", help="follow the live stream; say when a slot is offered to you")
    answer = watch.add_mutually_exclusive_group()
    answer.add_argument("--accept", action="store_true", help="accept an offer at once")
    answer.add_argument("--decline", action="store_true", help="decline an offer at once")
    watch.add_argument("--once", action="store_true", help="stop after the first offer")
    return top


KEYLESS = {"login", "submit", "slots"}
"""Commands that work without an API key (submit then submits anonymously)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    key = stored_key()
    if key is None and args.command not in KEYLESS:
        print(
            f"gpuq-agent: {args.command} needs an API key: run `gpuq-agent login` or set GPUQ_KEY",
            file=sys.stderr,
        )
        return 2
    client = Client(args.server, key, note=lambda message: print(message, file=sys.stderr))
    try:
        return COMMANDS[args.command](client, args)
    except ApiError as exc:
        print(f"gpuq-agent: {exc}", file=sys.stderr)
        for error in exc.body.get("errors", [])[:10]:
            print(f"  {error.get('field', '')}: {error.get('message', '')}", file=sys.stderr)
        if exc.status == 401:
            print("  (check the key: `gpuq-agent login`, or GPUQ_KEY)", file=sys.stderr)
        return 3 if exc.status is None else 1
    except (BackendError, OSError, ValueError) as exc:
        print(f"gpuq-agent: {exc}", file=sys.stderr)
        return 2


def _show(args: argparse.Namespace, answer: Any, text: str) -> None:
    print(json.dumps(answer, indent=2) if args.json else text)


def _login(client: Client, args: argparse.Namespace) -> int:
    key = args.key or os.environ.get("GPUQ_KEY") or getpass.getpass("API key: ")
    client.key = key.strip()
    me = client.get("/participants/me")
    path = save_key(client.key)
    _show(args, me, f"logged in as {me['name']}; key kept in {path}")
    return 0


def _run(client: Client, args: argparse.Namespace) -> int:
    command = args.benchmark[1:] if args.benchmark[:1] == ["--"] else args.benchmark
    if not command:
        raise ValueError("give the benchmark command after --, e.g. gpuq-agent run -- python bench.py")
    if not 1 <= args.rate <= 100:
        raise ValueError("--rate must be from 1 to 100 samples per second")
    device = open_device(args.backend, args.gpu)
    try:
        ticket = client.post("/runs")
        received = time.monotonic()
        env = {"GPUQ_RUN_SEED": str(ticket["seed"]), "GPUQ_RUN_NONCE": ticket["nonce"]}
        backend = args.backend.split(":", 1)[0]
        measured = measure.run(command, device, args.rate, env, received, backend)
    finally:
        device.close()
    if args.record_trace is not None:
        args.record_trace.write_text(json.dumps(measured.trace()))
    answer = _send_kept(client, keep_run(ticket, measure.evidence(measured, ticket, AGENT)))
    failed = [check["code"] for check in answer.get("checks", []) if not check["passed"]]
    lines = [
        f"submission {answer['submission_id']}: score {answer['score']}, "
        + (f"rank {answer['rank']}" if answer.get("rank") else "not ranked"),
        f"measured on {measured.identity.get('name')} in {measured.wall_seconds:.1f} s "
        f"({len(measured.samples['t'])} samples)",
    ]
    lines += [f"check failed: {code}" for code in failed]
    lines += _flag_lines(answer)
    _show(args, answer, "\n".join(lines))
    return 1 if failed else 0


def runs_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpuq" / "runs"


def keep_run(ticket: dict[str, Any], evidence: dict[str, Any]) -> Path:
    """Write a run's evidence, its ticket and the Idempotency-Key its POST uses to a file
    (owner-only) before it is sent: a run whose evidence is lost in transit is not lost."""
    folder = runs_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{ticket['ticket_id']}.json"
    record = {"ticket": ticket, "idempotency_key": uuid.uuid4().hex, "evidence": evidence}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(record, out)
    return path


def _send_kept(client: Client, path: Path) -> Any:
    """POST a kept run's evidence with the Idempotency-Key kept with it (sent again, the first
    answer is replayed); the file is removed once the server has answered."""
    record = json.loads(path.read_text())
    ticket = record["ticket"]
    answer = client.request(
        "POST", f"/runs/{ticket['ticket_id']}/evidence", record["evidence"], record["idempotency_key"]
    )
    path.unlink(missing_ok=True)
    return answer


def _resubmit(client: Client, args: argparse.Namespace) -> int:
    answer = _send_kept(client, args.file)
    _show(args, answer, f"submission {answer['submission_id']}: score {answer['score']}")
    return 0


def _submit(client: Client, args: argparse.Namespace) -> int:
    body = json.loads(args.file.read_text())
    if not isinstance(body, dict):
        raise ValueError(f"{args.file} must hold a JSON object with the five metrics")
    answer = client.post("/submit_qualification", body)
    lines = [f"submission {answer['submission_id']}: score {answer['score']}, rank {answer['rank']}"]
    _show(args, answer, "\n".join(lines + _flag_lines(answer)))
    return 0


def _flag_lines(answer: dict[str, Any]) -> list[str]:
    """The plausibility flags of a submission's answer, a line each."""
    return [f"flag: {flag['code']} ({flag['detail']})" for flag in answer.get("flags", [])]


def _status(client: Client, args: argparse.Namespace) -> int:
    me = client.get("/participants/me")
    best = me.get("best_score")
    _show(
        args,
        me,
        f"{me['name']}: best score {best if best is not None else '-'}, rank {me.get('rank') or '-'}",
    )
    return 0


def _quota(client: Client, args: argparse.Namespace) -> int:
    answer = client.get("/quota")
    limits = answer.get("limits", [])
    text = "\n".join(
        f"{item.get('scope')}: {item.get('remaining')} of {item.get('limit')} left" for item in limits
    )
    _show(args, answer, text or json.dumps(answer))
    return 0


def _slots(client: Client, args: argparse.Namespace) -> int:
    answer = client.get("/slots")
    rows = [
        f"{slot['name']}: {slot['state']}" + (f" ({slot['holder']})" if slot.get("holder") else "")
        for slot in answer.get("slots", [])
    ]
    _show(args, answer, "\n".join(rows) or "no slots")
    return 0


def _offer(client: Client, args: argparse.Namespace) -> int:
    """`accept SLOT` or `decline SLOT`: answer the offer of a slot."""
    _answer_offer(client, args, args.slot, args.command)
    return 0


def _answer_offer(client: Client, args: argparse.Namespace, slot: str, choice: str) -> None:
    """Accept or decline the offer of `slot` (POST /slots/<slot>/<choice>)."""
    answer = client.post(f"/slots/{slot}/{choice}")
    _show(args, answer, f"slot {slot}: {'accepted' if choice == 'accept' else 'declined'}")


def _watch(client: Client, args: argparse.Namespace) -> int:
    """Follow the stream (reconnecting when it ends); on an offer to this participant, ask (on
    a terminal) or act as --accept/--decline say. An offer made while not connected is found
    in GET /slots on each (re)connection."""
    me = client.get("/participants/me")["name"]
    while True:
        for slot in client.get("/slots").get("slots", []):
            offered = slot.get("holder") == me and slot.get("lease_state") == "offered"
            if offered and _offered(client, args, slot["name"], slot.get("expires_at")) and args.once:
                return 0
        try:
            for event, data in client.stream("/leaderboard/stream"):
                if event == "snapshot":
                    print(f"watching the live stream as {me}", flush=True)
                elif event == "slot" and data.get("participant") == me:
                    if data.get("action") == "offer":
                        if _offered(client, args, data["slot"], data.get("expires_at")) and args.once:
                            return 0
                    else:
                        print(f"slot {data['slot']}: {data['action']}", flush=True)
        except ApiError as exc:
            if exc.status not in (None, 429, 503):
                raise
            print(f"gpuq-agent: {exc}; reconnecting", file=sys.stderr)
        except OSError as exc:  # the connection dropped
            print(f"gpuq-agent: the stream ended ({exc}); reconnecting", file=sys.stderr)
        time.sleep(WATCH_RECONNECT_SECONDS)


WATCH_RECONNECT_SECONDS = 2.0


def _offered(client: Client, args: argparse.Namespace, slot: str, expires_at: str | None) -> bool:
    """Tell the participant about an offer and accept or decline it as asked; returns whether
    it was answered."""
    print(f"slot {slot} is offered to you" + (f" until {expires_at}" if expires_at else ""), flush=True)
    choice = "accept" if args.accept else "decline" if args.decline else None
    if choice is None and sys.stdin.isatty():
        reply = input(f"accept slot {slot}? [y/n] ").strip().lower()
        choice = "accept" if reply.startswith("y") else "decline" if reply.startswith("n") else None
    if choice is None:
        return False
    _answer_offer(client, args, slot, choice)
    return True


COMMANDS = {
    "login": _login,
    "run": _run,
    "submit": _submit,
    "resubmit": _resubmit,
    "status": _status,
    "quota": _quota,
    "slots": _slots,
    "accept": _offer,
    "decline": _offer,
    "watch": _watch,
}


if __name__ == "__main__":
    sys.exit(main())
