"""The engagement cycle: the open/click model, send times, segments, planning, onboarding."""
