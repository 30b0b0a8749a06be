"""Pure logic: no network, no database, no Redis."""
