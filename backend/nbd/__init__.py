"""The NBD data path: `protocol` is the pure state machine, `server` moves bytes."""
