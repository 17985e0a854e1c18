"""The operational store: outbox, suppressions, registry and idempotency tables."""
