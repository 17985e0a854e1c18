"""Email delivery: the outbox, SMTP or .eml mailers, suppressions, unsubscribe links."""
