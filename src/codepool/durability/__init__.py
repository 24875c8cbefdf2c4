"""Durability: what a client was told survives Redis losing its data.

Each app process journals every change it tells a client of (fsynced first); a
snapshot of the whole state is taken every so often without stopping Redis; a restore
writes a snapshot plus the journals of every host since back into an empty Redis, one
exact state. docs/durability.md and docs/scale.md say what each layer guarantees.

Journal:   records (what a record holds), journal (the writer, group commit),
           journal_files (listing, reading, pruning files).
Snapshot:  keyspace (which keys exist: the one key scan), snapshot (reads Redis into a
           file), snapshot_format (frames, verify, read back), snapshot_dir (the lock,
           which files are kept).
Restore:   plan (which journaled changes a slice misses; pure), writer (batched writes),
           apply (one project, frame by frame) with apply_codes, apply_lists,
           apply_events, apply_counters, apply_pools; restore (the whole run, markers).
Serving:   startup (before the workers: keep, catch up, restore), catchup, loop (the
           snapshot process beside the workers), hosts (many hosts: host ids, the
           registry of hosts that journal, the snapshot lease, the restore marker).

Nothing is imported here: app code imports the journal without the restore machinery.
"""
