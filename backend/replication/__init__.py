"""Asynchronous remote copy between two arrays: journal groups (the consistency
groups), pairs and their states, the operations on them (split, resync,
takeover, failback), the replicator that pulls and applies at the backup, the
path watch, and the remote link to the other array."""
