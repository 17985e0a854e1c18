"""Engagement: the open/click model, send times, segments, the contact decisions, the
cycle's daily plan, welcomes and the onboarding sensor's policy, writing and queueing
emails, follow-ups, and the API's one-customer path."""
