"""The leaderboard: the ranking rule once (`rule`), its types (`board`), the database
query (`query`) and the Redis index (`index`, with its Lua script `index.lua`).

Two views of one ranking: `all` (every ranked submission) and `best` (each
participant's best, every anonymous submission on its own); see `rule`.
"""

from gpuq.leaderboard.board import Entry, Leaderboard, Page
from gpuq.leaderboard.rule import DEFAULT_VIEW, VIEWS

__all__ = ["DEFAULT_VIEW", "VIEWS", "Entry", "Leaderboard", "Page"]
