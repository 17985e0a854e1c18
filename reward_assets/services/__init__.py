"""Operational services: contact rules, the outbox, email delivery and suppressions."""
