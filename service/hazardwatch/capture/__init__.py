"""Camera sources and reader threads: open, read, reconnect with backoff."""
