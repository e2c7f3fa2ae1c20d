"""Infrastructure: the hash-chained event store, crypto, settings and wiring."""
