"""Storage: the database (source of truth) and Redis (rebuildable index and counters)."""
