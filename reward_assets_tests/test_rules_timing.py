"""Contact rules and send timing: quiet hours in many zones, DST days, the frequency cap."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest

from reward_assets.contact import rules
from reward_assets.contact.holdout import is_holdout
from reward_assets.contact.rules import ContactPolicy, Recipient, blocking_reason
from reward_assets.contact.timing import UTC, in_quiet_hours, next_allowed, send_time, zone
from reward_assets.content.templates import EmailRequest, template_email
from reward_assets.settings import Settings

NO_QUIET = (0, 0)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def local(tz_name: str, *args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=ZoneInfo(tz_name))


@pytest.mark.parametrize(
    "name", [None, "", "Not/AZone", "America", "../etc/passwd", "/etc/passwd", "UTC ", float("nan")]
)
def test_unknown_or_empty_zone_is_utc(name):
    assert zone(name) is UTC


def test_known_zone_is_itself():
    assert zone("Asia/Kolkata").key == "Asia/Kolkata"


def test_unknown_zone_times_as_utc():
    at = utc(2023, 6, 15, 21, 30)
    assert in_quiet_hours(at, "Mars/Olympus_Mons", 21, 8)
    assert not in_quiet_hours(utc(2023, 6, 15, 20, 59), "Mars/Olympus_Mons", 21, 8)
    assert next_allowed(at, "Mars/Olympus_Mons", 21, 8) == utc(2023, 6, 16, 8)
    assert send_time(utc(2023, 6, 15, 11), 10, None, 21, 8) == utc(2023, 6, 16, 10)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        in_quiet_hours(dt.datetime(2023, 6, 15, 12), "UTC", 21, 8)
    with pytest.raises(ValueError, match="timezone-aware"):
        send_time(dt.datetime(2023, 6, 15, 12), 10, "UTC", 21, 8)


# (zone, UTC instant of local 20:59, of local 21:00, of local 07:59, of local 08:00),
# mid-June 2023: New York EDT -4, London BST +1, Kolkata +5:30, Sydney AEST +10,
# Auckland NZST +12.
QUIET_EDGES = [
    ("America/New_York", utc(2023, 6, 16, 0, 59), utc(2023, 6, 16, 1), utc(2023, 6, 16, 11, 59)),
    ("Europe/London", utc(2023, 6, 15, 19, 59), utc(2023, 6, 15, 20), utc(2023, 6, 16, 6, 59)),
    ("Asia/Kolkata", utc(2023, 6, 15, 15, 29), utc(2023, 6, 15, 15, 30), utc(2023, 6, 16, 2, 29)),
    ("Australia/Sydney", utc(2023, 6, 15, 10, 59), utc(2023, 6, 15, 11), utc(2023, 6, 15, 21, 59)),
    ("Pacific/Auckland", utc(2023, 6, 15, 8, 59), utc(2023, 6, 15, 9), utc(2023, 6, 15, 19, 59)),
]


@pytest.mark.parametrize(("tz_name", "last_loud", "first_quiet", "last_quiet"), QUIET_EDGES)
def test_quiet_hours_edges_in_local_time(tz_name, last_loud, first_quiet, last_quiet):
    minute = dt.timedelta(minutes=1)
    assert local_hour_minute(last_loud, tz_name) == (20, 59)
    assert local_hour_minute(last_quiet, tz_name) == (7, 59)
    assert not in_quiet_hours(last_loud, tz_name, 21, 8)
    assert in_quiet_hours(first_quiet, tz_name, 21, 8)
    assert in_quiet_hours(last_quiet, tz_name, 21, 8)
    assert not in_quiet_hours(last_quiet + minute, tz_name, 21, 8)
    # Quiet from 21:00 to 08:00 local: the end is the next local morning.
    assert next_allowed(first_quiet, tz_name, 21, 8) == last_quiet + minute
    assert next_allowed(last_quiet, tz_name, 21, 8) == last_quiet + minute
    assert next_allowed(last_loud, tz_name, 21, 8) == last_loud
    assert next_allowed(last_quiet + minute, tz_name, 21, 8) == last_quiet + minute


def local_hour_minute(at: dt.datetime, tz_name: str) -> tuple[int, int]:
    moment = at.astimezone(ZoneInfo(tz_name))
    return moment.hour, moment.minute


def test_quiet_hours_in_the_recipients_zone_not_utc():
    at = utc(2023, 6, 15, 12)  # 08:00 New York, 13:00 London, 22:00 Sydney, 00:00 Auckland
    quiet = {name: in_quiet_hours(at, name, 21, 8) for name, *_ in QUIET_EDGES}
    assert quiet == {
        "America/New_York": False,
        "Europe/London": False,
        "Asia/Kolkata": False,
        "Australia/Sydney": True,
        "Pacific/Auckland": True,
    }


def test_quiet_span_shapes():
    at = utc(2023, 6, 15, 3, 30)
    assert in_quiet_hours(at, "UTC", 1, 5)  # not wrapping: [01:00, 05:00)
    assert not in_quiet_hours(utc(2023, 6, 15, 5), "UTC", 1, 5)
    assert not in_quiet_hours(utc(2023, 6, 15, 0, 59), "UTC", 1, 5)
    assert next_allowed(at, "UTC", 1, 5) == utc(2023, 6, 15, 5)
    assert in_quiet_hours(utc(2023, 6, 15, 23), "UTC", 22, 0)  # ends at midnight
    assert next_allowed(utc(2023, 6, 15, 23), "UTC", 22, 0) == utc(2023, 6, 16)
    for hour in range(24):
        assert not in_quiet_hours(utc(2023, 6, 15, hour), "UTC", 7, 7)  # start == end: none


def test_next_allowed_from_after_midnight_is_the_same_morning():
    at = local("Asia/Kolkata", 2023, 6, 16, 2, 15)
    assert next_allowed(at, "Asia/Kolkata", 21, 8) == local("Asia/Kolkata", 2023, 6, 16, 8)
    assert next_allowed(at, "Asia/Kolkata", 21, 8).tzinfo is dt.UTC


# (zone, a quiet instant on the evening before the change, the UTC instant of 08:00 local
# on the change day). US: 2023-03-12 02:00 EST -> 03:00 EDT, 2023-11-05 02:00 EDT -> 01:00
# EST. EU: 2023-03-26 01:00 UTC forward, 2023-10-29 01:00 UTC back.
DST_MORNINGS = [
    ("America/New_York", utc(2023, 3, 12, 3), utc(2023, 3, 12, 12)),  # 08:00 EDT
    ("America/New_York", utc(2023, 11, 5, 3), utc(2023, 11, 5, 13)),  # 08:00 EST
    ("Europe/London", utc(2023, 3, 25, 22), utc(2023, 3, 26, 7)),  # 08:00 BST
    ("Europe/London", utc(2023, 10, 28, 22), utc(2023, 10, 29, 8)),  # 08:00 GMT
    ("Europe/Berlin", utc(2023, 3, 25, 22), utc(2023, 3, 26, 6)),  # 08:00 CEST
    ("Europe/Berlin", utc(2023, 10, 28, 22), utc(2023, 10, 29, 7)),  # 08:00 CET
    ("Australia/Sydney", utc(2023, 4, 1, 12), utc(2023, 4, 1, 22)),  # 08:00 AEST
    ("Pacific/Auckland", utc(2023, 9, 23, 10), utc(2023, 9, 23, 19)),  # 08:00 NZDT
]


@pytest.mark.parametrize(("tz_name", "evening", "morning"), DST_MORNINGS)
def test_next_allowed_across_a_dst_change(tz_name, evening, morning):
    assert in_quiet_hours(evening, tz_name, 21, 8)
    assert next_allowed(evening, tz_name, 21, 8) == morning
    assert local_hour_minute(morning, tz_name) == (8, 0)


# (zone, after, best hour, expected UTC): the day before and the day of each change.
DST_SENDS = [
    ("America/New_York", utc(2023, 3, 11, 16), 10, utc(2023, 3, 12, 14)),  # 10:00 EDT
    ("America/New_York", utc(2023, 3, 10, 16), 10, utc(2023, 3, 11, 15)),  # 10:00 EST
    ("America/New_York", utc(2023, 11, 4, 15), 10, utc(2023, 11, 5, 15)),  # 10:00 EST
    ("America/New_York", utc(2023, 11, 3, 15), 10, utc(2023, 11, 4, 14)),  # 10:00 EDT
    ("Europe/London", utc(2023, 3, 25, 12), 10, utc(2023, 3, 26, 9)),  # 10:00 BST
    ("Europe/London", utc(2023, 10, 28, 12), 10, utc(2023, 10, 29, 10)),  # 10:00 GMT
    ("Europe/Berlin", utc(2023, 3, 25, 12), 19, utc(2023, 3, 25, 18)),  # 19:00 CET, same day
    ("Europe/Berlin", utc(2023, 3, 25, 19), 19, utc(2023, 3, 26, 17)),  # 19:00 CEST
    ("Europe/Berlin", utc(2023, 10, 28, 19), 19, utc(2023, 10, 29, 18)),  # 19:00 CET
    ("Australia/Sydney", utc(2023, 9, 30, 12), 9, utc(2023, 9, 30, 22)),  # 09:00 AEDT 1 Oct
    ("Pacific/Auckland", utc(2023, 4, 1, 12), 9, utc(2023, 4, 1, 21)),  # 09:00 NZST 2 Apr
]


@pytest.mark.parametrize(("tz_name", "after", "hour", "expected"), DST_SENDS)
def test_send_time_at_the_local_hour_across_dst(tz_name, after, hour, expected):
    at = send_time(after, hour, tz_name, 21, 8)
    assert at == expected
    assert at.tzinfo is dt.UTC
    assert local_hour_minute(at, tz_name) == (hour, 0)


def test_send_time_at_the_exact_instant_is_now_and_just_after_is_tomorrow():
    ten = local("Asia/Kolkata", 2023, 6, 15, 10)
    assert send_time(ten, 10, "Asia/Kolkata", 21, 8) == ten
    assert send_time(
        ten + dt.timedelta(seconds=1), 10, "Asia/Kolkata", 21, 8
    ) == ten + dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("tz_name", "after", "hour", "expected", "local_after_gap", "local_before_gap"),
    [
        # 02:00 does not exist on 2023-03-12 in New York: the clock jumps to 03:00 EDT.
        ("America/New_York", utc(2023, 3, 12), 2, utc(2023, 3, 12, 7), (3, 0), (1, 59)),
        # 01:00 does not exist on 2023-03-26 in London: the clock jumps to 02:00 BST.
        ("Europe/London", utc(2023, 3, 25, 12), 1, utc(2023, 3, 26, 1), (2, 0), (0, 59)),
        # Troll jumps two hours, 01:00 -> 03:00: 02:00 lies inside the gap, and the first
        # instant after it is 03:00, not 04:00 (02:00 read with the old offset).
        ("Antarctica/Troll", utc(2023, 3, 25, 12), 2, utc(2023, 3, 26, 1), (3, 0), (0, 59)),
    ],
)
def test_send_time_in_a_dst_gap_moves_to_the_first_existing_instant(
    tz_name, after, hour, expected, local_after_gap, local_before_gap
):
    at = send_time(after, hour, tz_name, *NO_QUIET)
    assert at == expected
    assert local_hour_minute(at, tz_name) == local_after_gap
    assert local_hour_minute(at - dt.timedelta(seconds=1), tz_name) == local_before_gap


def test_send_time_in_a_half_hour_gap():
    # Lord Howe Island moves its clocks by 30 minutes: 02:00 -> 02:30 on 2023-10-01.
    at = send_time(utc(2023, 9, 30), 2, "Australia/Lord_Howe", *NO_QUIET)
    assert at == utc(2023, 9, 30, 15, 30)
    assert local_hour_minute(at, "Australia/Lord_Howe") == (2, 30)


@pytest.mark.parametrize(
    ("tz_name", "after", "hour", "first", "second"),
    [
        # 01:00 happens twice on 2023-11-05 in New York (EDT, then EST).
        ("America/New_York", utc(2023, 11, 5), 1, utc(2023, 11, 5, 5), utc(2023, 11, 5, 6)),
        # 01:00 happens twice on 2023-10-29 in London (BST, then GMT).
        ("Europe/London", utc(2023, 10, 28, 12), 1, utc(2023, 10, 29), utc(2023, 10, 29, 1)),
    ],
)
def test_send_time_on_a_repeated_hour_takes_the_first(tz_name, after, hour, first, second):
    assert local_hour_minute(first, tz_name) == local_hour_minute(second, tz_name) == (hour, 0)
    assert send_time(after, hour, tz_name, *NO_QUIET) == first


def test_next_allowed_when_quiet_hours_end_in_a_gap_or_a_repeat():
    # Quiet 21:00-02:00; on 2023-03-12 New York's 02:00 is skipped, so they end at 03:00 EDT.
    at = local("America/New_York", 2023, 3, 12, 1, 30)
    allowed = next_allowed(at, "America/New_York", 21, 2)
    assert allowed == utc(2023, 3, 12, 7)
    assert not in_quiet_hours(allowed, "America/New_York", 21, 2)
    assert in_quiet_hours(allowed - dt.timedelta(seconds=1), "America/New_York", 21, 2)
    # Quiet 22:00-01:00; on 2023-11-05 01:00 repeats: they end at its first occurrence.
    at = local("America/New_York", 2023, 11, 5, 0, 30)
    assert next_allowed(at, "America/New_York", 22, 1) == utc(2023, 11, 5, 5)


def test_send_time_in_quiet_hours_moves_to_their_end():
    # 23:00 is quiet (21-8): the message goes at 08:00 the next local morning instead.
    after = local("America/New_York", 2023, 6, 15, 9)
    assert send_time(after, 23, "America/New_York", 21, 8) == local(
        "America/New_York", 2023, 6, 16, 8
    )
    # On the eve of the EU change the next 08:00 is already summer time.
    after = local("Europe/London", 2023, 3, 25, 9)
    assert send_time(after, 22, "Europe/London", 21, 8) == utc(2023, 3, 26, 7)


@pytest.mark.parametrize("tz_name", [name for name, *_ in QUIET_EDGES])
def test_send_time_properties_over_a_year(tz_name):
    generator = random.Random(tz_name)
    for _ in range(300):
        after = utc(2023, 1, 1) + dt.timedelta(minutes=generator.randrange(365 * 24 * 60))
        hour = generator.randrange(24)
        at = send_time(after, hour, tz_name, 21, 8)
        assert after <= at < after + dt.timedelta(days=2)
        assert not in_quiet_hours(at, tz_name, 21, 8)
        # Hours 8-20 are neither quiet nor skipped by DST here: exactly that local hour,
        # and the first one: the same hour a local day earlier is before `after`.
        if 8 <= hour < 21:
            assert local_hour_minute(at, tz_name) == (hour, 0)
            day_before = at.astimezone(ZoneInfo(tz_name)).date() - dt.timedelta(days=1)
            assert local(tz_name, *day_before.timetuple()[:3], hour) < after
        else:
            assert local_hour_minute(at, tz_name) == (8, 0)


POLICY = ContactPolicy()
AT = utc(2023, 6, 15, 14)  # 10:00 in New York: not quiet
DAY = dt.timedelta(days=1)


def ids_by_holdout(share: float, count: int = 4000) -> tuple[list[str], list[str]]:
    ids = [f"C{i:06d}" for i in range(count)]
    return [c for c in ids if is_holdout(c, share)], [c for c in ids if not is_holdout(c, share)]


HELD, CONTACTABLE = ids_by_holdout(POLICY.holdout_share)


def reason(
    recipient: Recipient | None = None,
    campaign: str = "rewards_digest",
    at: dt.datetime = AT,
    *,
    policy: ContactPolicy = POLICY,
    suppressed: bool = False,
    kill_switch: bool = False,
    other_sends: tuple[dt.datetime, ...] = (),
) -> str | None:
    recipient = recipient or Recipient(CONTACTABLE[0], "America/New_York", True)
    return blocking_reason(
        policy,
        recipient,
        campaign,
        at,
        suppressed=suppressed,
        kill_switch=kill_switch,
        other_sends=other_sends,
    )


def test_campaign_names_and_reasons():
    assert rules.CAMPAIGNS == (
        "welcome",
        "followup_3",
        "followup_7",
        "rewards_digest",
        "win_back",
        "reactivation",
    )
    assert rules.WELCOME == "welcome"
    assert (
        rules.KILL_SWITCH,
        rules.NO_CONSENT,
        rules.SUPPRESSED,
        rules.HOLDOUT,
        rules.FREQUENCY_CAP,
        rules.QUIET_HOURS,
    ) == ("kill_switch", "no_consent", "suppressed", "holdout", "frequency_cap", "quiet_hours")


def test_policy_defaults_and_settings():
    assert ContactPolicy() == ContactPolicy(2, 7, 21, 8, 0.05)
    settings = Settings(
        frequency_cap=3,
        frequency_cap_days=5,
        quiet_hours_start=22,
        quiet_hours_end=7,
        holdout_share=0.1,
    )
    assert ContactPolicy.from_settings(settings) == ContactPolicy(3, 5, 22, 7, 0.1)


def test_a_message_that_breaks_no_rule_may_go():
    assert reason() is None
    assert reason(campaign="welcome") is None


def test_unknown_campaign_is_an_error():
    with pytest.raises(ValueError, match="unknown campaign"):
        reason(campaign="newsletter")
    with pytest.raises(ValueError, match="unknown campaign"):
        reason(campaign="followup_soon")


def test_a_follow_up_on_a_day_of_its_own_is_a_campaign_with_copy():
    # FOLLOWUP_DAYS=2,14 makes these: the rules, the outbox and the templates take them.
    assert reason(campaign="followup_14") is None
    email = template_email(
        EmailRequest("c1", "Ana", "gold", 900, "followup_14", (), "https://x.test/u")
    )
    assert email.subject and "Ana" in email.text_body


def test_reasons_in_order_of_precedence():
    held = HELD[0]
    everything = {
        "recipient": Recipient(held, "Australia/Sydney", False),  # 00:00 in Sydney: quiet
        "suppressed": True,
        "kill_switch": True,
        "other_sends": (AT - DAY, AT + DAY),
    }
    assert reason(**everything) == rules.KILL_SWITCH
    everything["kill_switch"] = False
    assert reason(**everything) == rules.NO_CONSENT
    everything["recipient"] = Recipient(held, "Australia/Sydney", True)
    assert reason(**everything) == rules.SUPPRESSED
    everything["suppressed"] = False
    assert reason(**everything) == rules.HOLDOUT
    everything["recipient"] = Recipient(CONTACTABLE[0], "Australia/Sydney", True)
    assert reason(**everything) == rules.FREQUENCY_CAP
    everything["other_sends"] = ()
    assert reason(**everything) == rules.QUIET_HOURS
    everything["recipient"] = Recipient(CONTACTABLE[0], "Europe/London", True)
    assert reason(**everything) is None


def test_kill_switch_stops_even_the_welcome():
    recipient = Recipient(CONTACTABLE[0], "Europe/London", True)
    assert reason(recipient, "welcome", kill_switch=True) == rules.KILL_SWITCH


@pytest.mark.parametrize("share", [0.05, 0.2])
def test_holdout_agrees_with_the_shared_holdout(share):
    policy = ContactPolicy(holdout_share=share)
    held, contactable = ids_by_holdout(share, count=2000)
    assert 0.6 * share * 2000 < len(held) < 1.4 * share * 2000
    for customer_id in held:
        assert reason(Recipient(customer_id, "UTC", True), policy=policy) == rules.HOLDOUT
    for customer_id in contactable:
        assert reason(Recipient(customer_id, "UTC", True), policy=policy) is None
    # The welcome is held out too: the holdout measures the whole programme.
    assert reason(Recipient(held[0], "UTC", True), "welcome", policy=policy) == rules.HOLDOUT


def test_no_holdout_when_its_share_is_zero():
    policy = ContactPolicy(holdout_share=0.0)
    assert reason(Recipient(HELD[0], "UTC", True), policy=policy) is None


def test_quiet_hours_of_an_unknown_zone_are_utc():
    recipient = Recipient(CONTACTABLE[0], "Nowhere/Special", True)
    assert reason(recipient, at=utc(2023, 6, 15, 22)) == rules.QUIET_HOURS
    assert reason(recipient, at=utc(2023, 6, 15, 12)) is None


def test_frequency_cap_window_is_open_on_both_sides():
    week = dt.timedelta(days=7)
    second = dt.timedelta(seconds=1)
    assert reason(other_sends=(AT - week + second,)) is None  # one other: below the cap of 2
    assert reason(other_sends=(AT - week + second, AT + week - second)) == rules.FREQUENCY_CAP
    assert reason(other_sends=(AT - week, AT + week)) is None  # exactly 7 days apart: outside
    assert reason(other_sends=(AT - week, AT + week, AT)) is None
    assert reason(other_sends=(AT - week, AT + week, AT, AT + second)) == rules.FREQUENCY_CAP


def test_welcome_is_exempt_from_the_cap_and_nothing_else():
    crowded = tuple(AT + k * dt.timedelta(hours=6) for k in range(-4, 5))
    for campaign in rules.CAMPAIGNS:
        expected = None if campaign == rules.WELCOME else rules.FREQUENCY_CAP
        assert reason(campaign=campaign, other_sends=crowded) == expected
    recipient = Recipient(CONTACTABLE[0], "America/New_York", False)
    assert reason(recipient, "welcome", other_sends=crowded) == rules.NO_CONSENT


def test_a_cap_of_zero_stops_every_marketing_email_but_the_welcome():
    policy = ContactPolicy(frequency_cap=0)
    assert reason(policy=policy) == rules.FREQUENCY_CAP
    assert reason(campaign="welcome", policy=policy) is None


@pytest.mark.parametrize(("cap", "days"), [(1, 7), (2, 7), (3, 7), (2, 3)])
def test_greedy_planning_never_overfills_a_rolling_window(cap, days):
    """Messages arrive in random order (cycles, follow-ups, retries); each is kept when
    `blocking_reason` allows it. No window of `days` may then hold more than `cap`."""
    policy = ContactPolicy(
        frequency_cap=cap,
        frequency_cap_days=days,
        quiet_hours_start=0,
        quiet_hours_end=0,
        holdout_share=0.0,
    )
    generator = random.Random(f"{cap}-{days}")
    start = utc(2023, 3, 1)
    span = dt.timedelta(days=days)
    fullest = 0
    refused = 0
    for customer in range(40):
        recipient = Recipient(f"C{customer}", "UTC", True)
        # Whole hours over two months, some exactly `days` apart, plus duplicates.
        candidates = [start + dt.timedelta(hours=generator.randrange(60 * 24)) for _ in range(80)]
        candidates += [moment + span for moment in candidates[:10]]
        kept: list[dt.datetime] = []
        for at in candidates:
            if reason(recipient, "rewards_digest", at, policy=policy, other_sends=tuple(kept)):
                refused += 1
            else:
                kept.append(at)
        # The fullest half-open window [t, t + days) can slide right until it starts at a
        # message, so windows starting at each kept message are the ones to check.
        for first in kept:
            in_window = sum(1 for at in kept if first <= at < first + span)
            assert in_window <= cap
            fullest = max(fullest, in_window)
    assert fullest == cap
    assert refused > 0
