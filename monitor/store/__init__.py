"""The state store (SQLite): the StateStore (state_store), its schema, migrations and row codecs
(schema), the outbox's rows (outbox), the file's integrity checks (file) and the one-writer lock (lock)."""
