"""Contact rules in one place: campaigns, consent, holdout, caps, quiet hours."""
