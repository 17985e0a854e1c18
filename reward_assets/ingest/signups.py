"""New sign-ups as they land: what the onboarding sensor watches and its job reads.

Both read the customer landing files, never the warehouse, so a sensor tick never waits
for (or blocks) a run that is writing the DuckDB file. Rows are validated with the
ingestion's own rules; a row the contract rejects is left to the ingestion's quarantine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reward_assets.ingest.contract import CUSTOMERS
from reward_assets.ingest.landing import LandingFile, landing_files
from reward_assets.ingest.validation import read_validated


def file_signature(file: LandingFile) -> str:
    stat = file.path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def read_customers(files: Iterable[LandingFile]) -> pd.DataFrame:
    """Valid customer rows of `files`, typed; a duplicated id keeps its first row."""
    return read_validated(list(files), CUSTOMERS).good


@dataclass
class SignupCursor:
    """What the sensor has read and the welcomes it requested that are not decided yet.

    `files`: each customer file's signature; `latest`: each file's latest valid sign-up
    date, so the data's 'today' follows the files as they are now (a file rewritten or
    removed takes its dates with it); `pending`: id -> [when requested (ISO, UTC), attempt].
    """

    files: dict[str, str] = field(default_factory=dict)
    latest: dict[str, str] = field(default_factory=dict)
    pending: dict[str, list] = field(default_factory=dict)

    @property
    def latest_signup(self) -> dt.date | None:
        return max(map(dt.date.fromisoformat, self.latest.values()), default=None)

    @classmethod
    def parse(cls, text: str | None) -> SignupCursor:
        if not text:
            return cls()
        raw = json.loads(text)
        files = dict(raw.get("files", {}))
        latest = raw.get("latest")
        if latest is None:
            # A cursor written before per-file dates: read every file again once, so a
            # single future-dated row it took for 'today' no longer counts.
            files = {}
        return cls(files, dict(latest or {}), dict(raw.get("pending", {})))

    def dump(self) -> str:
        return json.dumps(
            {"files": self.files, "latest": self.latest, "pending": self.pending},
            sort_keys=True,
        )


@dataclass(frozen=True)
class SignupScan:
    cursor: SignupCursor
    changed_files: list[str]
    rows_read: int
    as_of: dt.date | None
    recent: pd.DataFrame  # customer_id, signup_at of sign-ups to welcome


def scan_signups(
    data_dir: Path, cursor: SignupCursor, as_of: dt.date | None, max_age_days: int
) -> SignupScan:
    """Sign-ups in customer files that are new or changed since `cursor`.

    Only sign-ups within `max_age_days` of the data's 'today' count as new, so a first
    scan of a long history does not welcome everybody. Today is `as_of` when configured,
    else the latest valid sign-up date in the customer files as they are now (a sign-up
    dated in the future is quarantined by validation and never counts).
    """
    files = landing_files(data_dir, CUSTOMERS.name)
    signatures = {f.name: file_signature(f) for f in files}
    changed = [f for f in files if cursor.files.get(f.name) != signatures[f.name]]
    rows = read_customers(changed)
    latest = {name: day for name, day in cursor.latest.items() if name in signatures}
    for file in changed:
        latest.pop(file.name, None)
    if len(rows):
        by_file = rows.groupby("source_file")["signup_at"].max()
        latest.update({name: ts.date().isoformat() for name, ts in by_file.items()})
    scanned = SignupCursor(signatures, latest, dict(cursor.pending))
    today = as_of or scanned.latest_signup
    recent = rows.iloc[:0]
    if today is not None:
        day = rows["signup_at"].dt.date
        recent = rows[(day >= today - dt.timedelta(days=max_age_days)) & (day <= today)]
    return SignupScan(
        cursor=scanned,
        changed_files=[f.name for f in changed],
        rows_read=len(rows),
        as_of=today,
        recent=recent[["customer_id", "signup_at"]].reset_index(drop=True),
    )


def batches(customer_ids: Iterable[str], size: int) -> list[list[str]]:
    ordered = sorted(set(customer_ids))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def batch_run_key(customer_ids: list[str], attempt: int = 1) -> str:
    """The same customers always make the same key, so a replayed tick starts no new run;
    a retry of a batch whose run decided nothing gets a key of its own."""
    digest = hashlib.sha256("\n".join(sorted(customer_ids)).encode()).hexdigest()[:24]
    return f"onboarding-{digest}" + (f"-retry{attempt - 1}" if attempt > 1 else "")


def customers_by_id(data_dir: Path, customer_ids: Iterable[str]) -> pd.DataFrame:
    wanted = set(customer_ids)
    rows = read_customers(landing_files(data_dir, CUSTOMERS.name))
    return rows[rows["customer_id"].isin(wanted)].reset_index(drop=True)
