"""Writing and queueing: the content writer turns decisions to contact into emails, and
the outbox takes them, with the skips of the other decisions, under their message keys.

`write_and_queue` is the one way a decision reaches the outbox, for onboarding, the
engagement cycle and the API's one-customer path alike, and keeps the follow-ups in step:
a queued welcome's follow-ups are scheduled, a queued follow-up is marked queued.
`queue_planned` does it for the day's engagement plan.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import pandas as pd

from reward_assets.contact.campaigns import WELCOME, is_followup
from reward_assets.contact.rules import FREQUENCY_CAP, ContactPolicy
from reward_assets.content.experiments import TEMPLATE_ONLY, Experiments, load_experiments
from reward_assets.content.templates import EmailRequest, Offer, WrittenEmail
from reward_assets.content.writer import ContentConfig, ContentWriter
from reward_assets.email.outbox import Message, Outbox
from reward_assets.email.unsubscribe import make_token, signing_secret, unsubscribe_url
from reward_assets.engagement import followups
from reward_assets.engagement.decisions import Decision
from reward_assets.engagement.plan import PLAN_TABLE, planned_decisions
from reward_assets.engagement.segments import SEGMENT_RULES
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.ops.store import OpsStore
from reward_assets.recommend.fallback import version as fallback_version
from reward_assets.settings import Settings
from reward_assets.warehouse.store import Warehouse

OFFERS_PER_EMAIL = 3
# What an email's data came from, per customer (`data_lineage`): the scores and sets a
# finished run served. `{where}` is the caller's: the day's plan, or one customer. It
# filters the customers before the joins, so only theirs are joined: as a WHERE after
# them, DuckDB joined every customer's scores and sets and dropped the rest at the end.
_DATA_LINEAGE = """
SELECT c.customer_id, s.segment, r.model_version AS taste_model,
       ch.model_version AS churn_model, p.model_version AS engagement_model
FROM (SELECT customer_id FROM marts.dim_customers c {where}) c
LEFT JOIN ml.customer_segments s ON s.customer_id = c.customer_id
LEFT JOIN ml.recommendation_sets r ON r.customer_id = c.customer_id AND r.rank = 1
LEFT JOIN ml.churn_scores ch ON ch.customer_id = c.customer_id
LEFT JOIN ml.send_time_preferences p ON p.customer_id = c.customer_id
"""


# The customers the day's plan contacts.
_CONTACTED = f"SELECT customer_id FROM {PLAN_TABLE} WHERE as_of = :as_of AND decision = 'contact'"


@dataclass(frozen=True)
class Queued:
    queued: int  # messages this call added to the outbox
    skipped: int  # skips this call recorded, the capped messages' included
    messages: list[Message]  # written for the decisions to contact, queued or not
    content: dict[str, int]  # the content writer's stats
    # Keys of written messages recorded as skipped instead: another message took the
    # customer's last place under the frequency cap while this one was being written.
    capped: tuple[str, ...] = ()

    @property
    def arms(self) -> dict[str, int]:
        """Written messages per experiment arm, "<experiment>/<variant>"."""
        counts = Counter(f"{m.experiment}/{m.variant}" for m in self.messages if m.experiment)
        return dict(sorted(counts.items()))


def write_and_queue(
    store: OpsStore,
    decisions: Sequence[Decision],
    profiles: pd.DataFrame,
    offers: pd.DataFrame,
    settings: Settings,
    *,
    lineage: Mapping[str, dict] | None = None,
    run_id: str | None = None,
) -> Queued:
    """Write the emails of the decisions to contact, queue them and record the skips of the
    others; a key the outbox holds already stays as it is.

    profiles: customer_id, email, first_name, tier, points_balance, and signup_at for
    welcomes; offers: as `email_requests` reads them (unread when nobody is contacted);
    lineage: what each customer's data came from (`data_lineage`, or the welcome's).
    """
    contact = [d for d in decisions if d.reason is None]
    writer = ContentWriter(ContentConfig.from_settings(settings), store)
    messages = []
    if contact:
        messages = write_messages(
            contact,
            profiles,
            offers,
            writer,
            public_base_url=settings.public_base_url,
            unsubscribe_secret=signing_secret(settings),
            experiments=load_experiments(settings.experiments_file),
            lineage=lineage or {},
        )
    welcomed = {d.customer_id for d in contact if d.campaign == WELCOME}
    if welcomed:
        # Before the enqueue: a rerun skips customers whose welcome is queued, so
        # scheduling after it could be lost to a crash in between.
        signups = profiles[profiles.customer_id.isin(welcomed)]
        followups.schedule(
            store, zip(signups.customer_id, signups.signup_at, strict=True), settings.followup_days
        )
    outbox = Outbox(store)
    policy = ContactPolicy.from_settings(settings)
    enqueued = outbox.enqueue_within_cap(messages, policy, run_id=run_id)
    skipped = outbox.record_skips([d.skip() for d in decisions if d.reason], run_id=run_id)
    capped = set(enqueued.capped)
    sent = [d for d in contact if is_followup(d.campaign)]
    if sent:
        followups.mark(
            store,
            [(d.customer_id, d.campaign, None) for d in sent if d.key not in capped],
            followups.QUEUED,
        )
        followups.mark(
            store,
            [(d.customer_id, d.campaign, FREQUENCY_CAP) for d in sent if d.key in capped],
            followups.CANCELLED,
        )
    return Queued(enqueued.queued, skipped + len(capped), messages, writer.stats, enqueued.capped)


@dataclass(frozen=True)
class QueuedPlan:
    as_of: dt.date
    result: Queued
    already_in_outbox: int
    outbox: dict[str, int]  # its rows by status, afterwards


def queue_planned(
    open_warehouse: Callable[[], AbstractContextManager[Warehouse]],
    store: OpsStore,
    settings: Settings,
    *,
    run_id: str | None = None,
) -> QueuedPlan:
    """`write_and_queue` for AS_OF's plan, each email around the customer's current top
    recommended rewards; decisions the outbox holds already are left alone.

    The warehouse is open only while the plan, profiles and offers are read, not while the
    content is written, so it is not held through the LLM calls.
    """
    with open_warehouse() as warehouse:
        as_of = resolve_as_of(warehouse, settings.as_of)
        decisions = planned_decisions(warehouse, as_of)
        lineage = data_lineage(
            warehouse, as_of, f"WHERE c.customer_id IN ({_CONTACTED})", {"as_of": as_of}
        )
        # Only the customers to contact: the engine filters, not pandas over every row.
        profiles = warehouse.frame(
            "SELECT customer_id, email, first_name, tier, points_balance FROM marts.dim_customers "
            f"WHERE customer_id IN ({_CONTACTED})",
            {"as_of": as_of},
        )
        offers = warehouse.frame(
            f"""
            SELECT s.customer_id, s.rank, s.reward_id, r.name, r.category, r.points_cost,
                   s.reason, s.is_almost_there
            FROM ml.recommendation_sets s JOIN marts.dim_rewards r ON r.reward_id = s.reward_id
            WHERE s.rank <= :top AND s.customer_id IN ({_CONTACTED})
            """,
            {"top": OFFERS_PER_EMAIL, "as_of": as_of},
        )
    outbox = Outbox(store)
    decided = outbox.existing([d.key for d in decisions])
    pending = [d for d in decisions if d.key not in decided]
    result = write_and_queue(
        store, pending, profiles, offers, settings, lineage=lineage, run_id=run_id
    )
    return QueuedPlan(as_of, result, len(decided), outbox.status_counts())


def data_lineage(
    reader, as_of: dt.date, where: str, params: Mapping[str, object]
) -> dict[str, dict]:
    """Per customer matched by `where` (on `marts.dim_customers c`): the data day, the
    segment and its rule, and the model versions behind the scores and sets served."""
    frame = reader.frame(_DATA_LINEAGE.format(where=where), params)
    # Whole columns, not `itertuples`: see `email_requests`. Customers of one segment
    # share their models' versions, so each distinct lineage is built once and shared
    # (read only: `message_lineage` copies it).
    columns = [frame[name].tolist() for name in ("customer_id", "segment", *LINEAGE_MODELS)]
    shared: dict[tuple, dict] = {}
    lineage = {}
    for customer_id, *facts in zip(*columns, strict=True):
        # NaN is not equal to itself: the key holds the values `_text` makes of them.
        segment, *versions = (_text(v) for v in facts)
        key = (segment, *versions)
        if key not in shared:
            shared[key] = {
                "as_of": as_of.isoformat(),
                "segment": segment,
                "segment_rule": SEGMENT_RULES.get(segment),
                "models": dict(zip(LINEAGE_MODELS, versions, strict=True)),
            }
        lineage[customer_id] = shared[key]
    return lineage


# The registry names of the models an email's lineage records.
LINEAGE_MODELS = ("taste_model", "churn_model", "engagement_model")


def welcome_lineage(
    customer_ids: Iterable[str], as_of: dt.date, reward_model: str | None
) -> dict[str, dict]:
    """A welcome's lineage: first rewards from the served ranker (or, before one is
    approved, the ranking fallback, which for a new customer is popularity), no scores yet,
    the `new` segment."""
    models = dict.fromkeys(LINEAGE_MODELS)
    models["taste_model"] = reward_model or fallback_version("popularity")
    return {
        customer_id: {
            "as_of": as_of.isoformat(),
            "segment": "new",
            "segment_rule": SEGMENT_RULES["new"],
            "models": models,
        }
        for customer_id in customer_ids
    }


def email_requests(
    decisions: Sequence[Decision],
    profiles: pd.DataFrame,
    offers: pd.DataFrame,
    *,
    public_base_url: str,
    unsubscribe_secret: str,
    experiments: Experiments | None = None,
) -> list[tuple[EmailRequest, Assignment]]:
    """Content requests for decisions to contact, each with its experiment arm, whose
    variant shaped the request (copy, number of offers, content source).

    profiles: customer_id, first_name, tier, points_balance; offers: customer_id, rank,
    reward_id, name, category, points_cost, reason, is_almost_there.
    """
    # Plain dicts built from whole columns (`tolist`), not a DataFrame lookup or an
    # `itertuples` row per decision: the cycle writes 100k+ emails at 1M customers, and
    # iterating pandas' Arrow-backed strings row by row costs more than the emails.
    profile = dict(
        zip(
            profiles.customer_id.tolist(),
            zip(
                profiles.first_name.tolist(),
                profiles.tier.tolist(),
                profiles.points_balance.tolist(),
                strict=True,
            ),
            strict=True,
        )
    )
    top = offers.sort_values(["customer_id", "rank"]).groupby("customer_id").head(OFFERS_PER_EMAIL)
    columns = ("reward_id", "name", "category", "points_cost", "reason", "is_almost_there")
    by_customer: dict[str, list[Offer]] = {}
    for customer_id, reward_id, name, category, cost, reason, almost in zip(
        top.customer_id.tolist(), *(top[c].tolist() for c in columns), strict=True
    ):
        by_customer.setdefault(customer_id, []).append(
            Offer(reward_id, name, category, int(cost), reason, bool(almost))
        )
    requests = []
    for decision in decisions:
        name, tier, balance = profile[decision.customer_id]
        token = make_token(decision.customer_id, unsubscribe_secret)
        experiment = experiments.for_campaign(decision.campaign) if experiments else None
        variant = experiment.assign(decision.customer_id) if experiment else None
        chosen = tuple(by_customer.get(decision.customer_id, ()))
        if variant is not None and variant.offers is not None:
            chosen = chosen[: variant.offers]
        # The variant's copy, when there is one, goes in at construction: a
        # `dataclasses.replace` per email costs as much as writing it.
        copy = {}
        if variant is not None:
            copy = {
                "subject": variant.subject,
                "preheader": variant.preheader,
                "intro": variant.intro,
                "allow_llm": variant.content != TEMPLATE_ONLY,
            }
        request = EmailRequest(
            customer_id=decision.customer_id,
            first_name=_text(name),
            tier=_text(tier),
            points_balance=None if pd.isna(balance) else int(balance),
            campaign=decision.campaign,
            offers=chosen,
            unsubscribe_url=unsubscribe_url(public_base_url, token),
            **copy,
        )
        arm = Assignment(experiment.name, variant.name) if experiment else Assignment()
        requests.append((request, arm))
    return requests


def write_messages(
    decisions: Sequence[Decision],
    profiles: pd.DataFrame,
    offers: pd.DataFrame,
    writer: ContentWriter,
    *,
    public_base_url: str,
    unsubscribe_secret: str,
    experiments: Experiments | None = None,
    lineage: Mapping[str, dict] | None = None,
) -> list[Message]:
    """The emails of `decisions` to contact, written by `writer` (see `email_requests`;
    profiles also carry each customer's email), each with its lineage."""
    requested = email_requests(
        decisions,
        profiles,
        offers,
        public_base_url=public_base_url,
        unsubscribe_secret=unsubscribe_secret,
        experiments=experiments,
    )
    written = writer.write_many([request for request, _ in requested])
    addresses = dict(zip(profiles.customer_id.tolist(), profiles.email.tolist(), strict=True))
    lineage = lineage or {}
    return [
        Message(
            customer_id=d.customer_id,
            campaign=d.campaign,
            occurrence=d.occurrence,
            send_at=d.send_at,
            timezone=d.timezone,
            to_address=addresses[d.customer_id],
            subject=w.subject,
            preheader=w.preheader,
            text_body=w.text_body,
            html_body=w.html_body,
            reward_ids=tuple(w.reward_ids),
            content_source=w.source,
            experiment=arm.experiment,
            variant=arm.variant,
            lineage=message_lineage(lineage.get(d.customer_id), arm, w),
        )
        for d, (_, arm), w in zip(decisions, requested, written, strict=True)
    ]


@dataclass(frozen=True)
class Assignment:
    """A message's experiment arm; both None when its campaign is in no experiment."""

    experiment: str | None = None
    variant: str | None = None


def message_lineage(data: dict | None, arm: Assignment, written: WrittenEmail) -> dict:
    """The chain `email explain` prints: the data's lineage, the arm and the content's."""
    data = data or {"as_of": None, "segment": None, "segment_rule": None, "models": {}}
    return {
        **data,
        "experiment": arm.experiment,
        "variant": arm.variant,
        "content": {
            "source": written.source,
            "fallback_reason": written.fallback_reason,
            "llm_model": written.llm_model,
            "prompt_sha256": written.prompt_sha256,
            "template_sha256": written.template_sha256,
        },
    }


def _text(value) -> str | None:
    return None if value is None or pd.isna(value) or value == "" else str(value)
