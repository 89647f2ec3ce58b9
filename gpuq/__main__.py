"""`gpuq ...` and `python -m gpuq ...`: the admin commands (gpuq.cli), and `gpuq serve`.

`serve` is told apart before anything else is imported: the production server
needs gevent to patch the standard library first, exactly as `python app.py` does.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        from gevent import monkey

        monkey.patch_all()

        from gpuq.server import main as serve

        raise SystemExit(serve(sys.argv[2:], prog="gpuq serve"))
    from gpuq.cli import main as commands

    commands(prog_name="gpuq")


if __name__ == "__main__":
    main()
