"""The engagement wiring: suppression, segments, the day's plan and messages (the daily
cycle), onboarding (sensor-triggered) and delivery. The logic lives in `engagement/`,
`email/` and `contact/`."""

# The asset group of the daily cycle; `engagement_cycle_job` runs all of it.
ENGAGEMENT = "engagement"
