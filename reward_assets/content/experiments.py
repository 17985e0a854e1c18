"""Content experiments: variants of a campaign's email, configured in YAML, not code.

    experiments:
      - name: digest_subject            # stable: it seeds the assignment hash
        campaigns: [rewards_digest]     # a campaign is in at most one experiment
        variants:                       # one is named `control`: the baseline
          - {name: control, weight: 1}
          - {name: points_subject, weight: 1, subject: "Your points can buy these"}
          - {name: one_offer, weight: 1, offers: 1}
          - {name: template_only, weight: 1, content: template}

A variant may replace the subject, preheader or intro (the copy), show fewer offers (the
offer rule) and choose the content source: `auto` (the LLM when GROQ_API_KEY is set, the
template otherwise, as without experiments) or `template` (never the LLM), so "LLM vs
template" is two variants. A customer's variant is a stable hash of (experiment, customer
id) against the weights: the same in every run and process, independent of the holdout
(which hashes the id alone) and of other experiments.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from reward_assets.contact.campaigns import is_campaign

AUTO, TEMPLATE_ONLY = "auto", "template"
# The variant every other one is measured against (`analytics.experiments`).
CONTROL = "control"
CONTENT_CHOICES = (AUTO, TEMPLATE_ONLY)
_VARIANT_KEYS = {"name", "weight", "subject", "preheader", "intro", "offers", "content"}


class ExperimentConfigError(ValueError):
    """The experiments file breaks a rule; the message names the experiment and field."""


@dataclass(frozen=True)
class Variant:
    name: str
    weight: float
    subject: str | None = None
    preheader: str | None = None
    intro: str | None = None
    offers: int | None = None  # show at most this many recommended rewards
    content: str = AUTO


@dataclass(frozen=True)
class Experiment:
    name: str
    campaigns: tuple[str, ...]
    variants: tuple[Variant, ...]

    def assign(self, customer_id: str) -> Variant:
        digest = hashlib.sha256(f"{self.name}\0{customer_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * sum(v.weight for v in self.variants)
        for variant in self.variants:
            point -= variant.weight
            if point < 0:
                return variant
        return self.variants[-1]  # rounding at the very top of the range


@dataclass(frozen=True)
class Experiments:
    experiments: tuple[Experiment, ...] = ()

    def for_campaign(self, campaign: str) -> Experiment | None:
        return next((e for e in self.experiments if campaign in e.campaigns), None)


def load_experiments(path: Path | None) -> Experiments:
    """The experiments of the file at `path`; none when no file is configured."""
    if path is None:
        return Experiments()
    if not path.is_file():
        raise ExperimentConfigError(f"EXPERIMENTS_FILE {path} does not exist")
    return parse_experiments(yaml.safe_load(path.read_text()) or {})


def parse_experiments(document: dict) -> Experiments:
    entries = document.get("experiments") or []
    if not isinstance(entries, list):
        raise ExperimentConfigError("`experiments` must be a list")
    experiments, names, taken = [], set(), {}
    for entry in entries:
        experiment = _experiment(entry)
        if experiment.name in names:
            raise ExperimentConfigError(f"experiment {experiment.name!r} is declared twice")
        names.add(experiment.name)
        for campaign in experiment.campaigns:
            if campaign in taken:
                raise ExperimentConfigError(
                    f"campaign {campaign!r} is in experiments {taken[campaign]!r} and "
                    f"{experiment.name!r}: one experiment per campaign"
                )
            taken[campaign] = experiment.name
        experiments.append(experiment)
    return Experiments(tuple(experiments))


def _experiment(entry) -> Experiment:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise ExperimentConfigError("every experiment needs a name")
    name = str(entry["name"])
    campaigns = tuple(str(c) for c in entry.get("campaigns") or ())
    unknown = [c for c in campaigns if not is_campaign(c)]
    if not campaigns or unknown:
        raise ExperimentConfigError(
            f"experiment {name!r}: campaigns must name known campaigns (unknown: {unknown})"
        )
    variants = tuple(_variant(name, v) for v in entry.get("variants") or ())
    names = [v.name for v in variants]
    if len(variants) < 2 or len(set(names)) != len(names) or CONTROL not in names:
        raise ExperimentConfigError(
            f"experiment {name!r}: needs two or more distinctly named variants, "
            f"one of them {CONTROL!r}"
        )
    return Experiment(name, campaigns, variants)


def _variant(experiment: str, entry) -> Variant:
    where = f"experiment {experiment!r}"
    if not isinstance(entry, dict) or not entry.get("name"):
        raise ExperimentConfigError(f"{where}: every variant needs a name")
    extra = set(entry) - _VARIANT_KEYS
    if extra:
        raise ExperimentConfigError(f"{where}: unknown variant fields {sorted(extra)}")
    weight = float(entry.get("weight", 1))
    offers = entry.get("offers")
    content = entry.get("content", AUTO)
    if weight <= 0:
        raise ExperimentConfigError(f"{where}: variant weights must be positive")
    if offers is not None and (not isinstance(offers, int) or offers < 1):
        raise ExperimentConfigError(f"{where}: `offers` must be a positive whole number")
    if content not in CONTENT_CHOICES:
        raise ExperimentConfigError(f"{where}: `content` must be one of {CONTENT_CHOICES}")
    texts = {key: entry.get(key) for key in ("subject", "preheader", "intro")}
    for key, text in texts.items():
        # A line break in a subject or preheader would corrupt the message headers.
        if text is not None and (not str(text).strip() or (key != "intro" and "\n" in text)):
            raise ExperimentConfigError(f"{where}: `{key}` must be one non-empty line")
    return Variant(str(entry["name"]), weight, **texts, offers=offers, content=content)
