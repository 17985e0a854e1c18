"""Small landing folders written by hand, so each test states exactly what it plants."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import pandas as pd

from reward_assets.ingest.contract import ENTITIES

CUSTOMER = {
    "email": "",
    "signup_at": "2023-01-01T00:00:00Z",
    "first_name": "Pat",
    "last_name": "Lee",
    "country": "us",
    "timezone": "America/New_York",
    "tier": "gold",
    "points_balance": "1000",
    "marketing_opt_in": "true",
    "preferred_categories": "travel",
}


def write_rows(data_dir: Path, entity: str, file_name: str, rows: list[dict]) -> Path:
    """Write `rows` under data_dir/<entity>/<file_name> with the contract's header."""
    path = Path(data_dir) / entity / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ENTITIES[entity].column_names
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def customer(customer_id: str, **overrides) -> dict:
    return {
        **CUSTOMER,
        "customer_id": customer_id,
        "email": f"{customer_id}@example.com",
        **overrides,
    }


def transaction(
    txn_id: str, customer_id: str, occurred_at: str, amount: str = "10.00", **kw
) -> dict:
    return {
        "transaction_id": txn_id,
        "customer_id": customer_id,
        "occurred_at": occurred_at,
        "amount": amount,
        "currency": "USD",
        "category": "travel",
        "channel": "app",
        "points_earned": "10",
        **kw,
    }


def write_basic_landing(data_dir: Path) -> None:
    """Three clean customers, two rewards, a few days of events: every table non-empty."""
    write_rows(data_dir, "customers", "customers.csv", [customer(f"cust00{i}") for i in (1, 2, 3)])
    write_rows(
        data_dir,
        "rewards",
        "rewards.csv",
        [
            {
                "reward_id": "rwd001",
                "name": "Flight",
                "category": "travel",
                "points_cost": "500",
                "inventory": "5",
                "min_tier": "silver",
                "active": "true",
            },
            {
                "reward_id": "rwd002",
                "name": "Coffee",
                "category": "dining",
                "points_cost": "50",
                "inventory": "100",
                "min_tier": "bronze",
                "active": "true",
            },
        ],
    )
    for day in ("2023-03-01", "2023-03-02", "2023-03-03"):
        write_rows(
            data_dir,
            "transactions",
            f"{day}.csv",
            [
                transaction(
                    f"t{day}-{c}", f"cust00{c}", f"{day}T1{c}:00:00Z", amount=f"{c * 10}.50"
                )
                for c in (1, 2, 3)
            ]
            + [
                transaction(
                    f"r{day}", "cust001", f"{day}T20:00:00Z", amount="-5.00", points_earned="-5"
                )
            ],
        )
        write_rows(
            data_dir,
            "redemptions",
            f"{day}.csv",
            [
                {
                    "redemption_id": f"d{day}",
                    "customer_id": "cust002",
                    "reward_id": "rwd002",
                    "redeemed_at": f"{day}T12:00:00Z",
                    "points_spent": "50",
                }
            ],
        )
        write_rows(
            data_dir,
            "engagement_events",
            f"{day}.csv",
            [
                {
                    "event_id": f"e{day}-s",
                    "customer_id": "cust001",
                    "event_type": "sent",
                    "occurred_at": f"{day}T09:00:00Z",
                    "message_id": f"m{day}",
                    "campaign": "spring",
                    "channel": "email",
                },
                {
                    "event_id": f"e{day}-o",
                    "customer_id": "cust001",
                    "event_type": "open",
                    "occurred_at": f"{day}T09:30:00Z",
                    "message_id": f"m{day}",
                    "campaign": "spring",
                    "channel": "email",
                },
            ],
        )


# Personal values planted only in broken rows: none may reach a log, an error or metadata.
PLANTED_EMAIL = "zebediah.quarrington@example.com"
PLANTED_NAME = "Zebediah"


def _csv_text(entity: str, rows: list[dict], header: list[str] | None = None) -> str:
    columns = header or ENTITIES[entity].column_names
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    return buffer.getvalue()


def _line(entity: str, row: dict) -> str:
    """One CSV line of `row` under the contract's header, without its newline."""
    return _csv_text(entity, [row]).splitlines()[1]


def write_broken_landing(data_dir: Path) -> dict:
    """The basic landing plus one customer file of each broken kind, with good rows beside
    the bad ones. Returns what a load must make of it: `loaded` (customer ids),
    `quarantined` ({(file, line, reason)}) and `skipped` (files not read)."""
    write_basic_landing(data_dir)
    folder = Path(data_dir) / "customers"
    pii = customer("bad", email=PLANTED_EMAIL, first_name=PLANTED_NAME, last_name=PLANTED_NAME)
    header = ",".join(ENTITIES["customers"].column_names)
    good = {f"g{i:02d}": customer(f"g{i:02d}") for i in range(1, 30)}
    line = {cid: _line("customers", row) for cid, row in good.items()}
    pii_line = _line("customers", pii)
    quarantined: set[tuple[str, int | None, str]] = set()

    def plant(name: str, body: bytes, bad: list[tuple[int | None, str]]) -> None:
        (folder / name).write_bytes(body)
        quarantined.update((f"customers/{name.strip()}", n, reason) for n, reason in bad)

    # Lines: 2 good, 3 extra field, 4 short, 5 NUL byte, 6 Latin-1 byte, 7 a 3 MB field,
    # 8 points_balance -5, 9 good, 10 unterminated quote, 11 good.
    rows = [
        line["g01"],
        pii_line + ",surplus",
        pii_line.rsplit(",", 3)[0],
        pii_line.replace(PLANTED_NAME, PLANTED_NAME[:3] + "\x00" + PLANTED_NAME[3:], 1),
        None,  # Latin-1, written as bytes below
        pii_line.replace("travel", "x" * 3_000_000),
        _line("customers", customer("neg", points_balance="-5", email=PLANTED_EMAIL)),
        line["g02"],
        pii_line.replace(PLANTED_NAME, '"' + PLANTED_NAME, 1),
        line["g03"],
    ]
    latin = pii_line.replace(PLANTED_NAME, "Zébédiah", 1).encode("latin-1")
    body = header.encode() + b"\n"
    body += b"\n".join(r.encode() if r is not None else latin for r in rows) + b"\n"
    plant(
        "2023-03-02.csv",
        body,
        [
            (3, "malformed_row"),
            (4, "malformed_row"),
            (5, "malformed_row"),
            (6, "invalid_encoding"),
            (7, "oversized_value"),
            (8, "out_of_range"),
            (10, "malformed_row"),
        ],
    )
    # A quoted line break in a value: the rows after it keep their physical line numbers.
    quoted = _csv_text("customers", [customer("g04", preferred_categories="travel\ndining")])
    plant(
        "2023-03-03.csv",
        (quoted + line["g05"] + "\n" + pii_line + ",x\n").encode(),
        [(5, "malformed_row")],
    )
    plant("2023-03-04.csv", _csv_text("customers", [good["g06"]]).encode("utf-16"), [])
    plant("2023-03-05.CSV", _csv_text("customers", [good["g07"]]).encode(), [])
    plant("2023-03-06.csv.gz", gzip.compress(_csv_text("customers", [good["g08"]]).encode()), [])
    plant("2023-03-07.csv ", _csv_text("customers", [good["g09"]]).encode(), [])
    plant("2023-03-08.csv", _csv_text("customers", [good["g10"]]).encode("utf-8-sig"), [])
    # A repeated column: which value is meant cannot be known, so the file is quarantined.
    doubled = [*ENTITIES["customers"].column_names, "email"]
    plant(
        "2023-03-09.csv",
        _csv_text("customers", [{**pii, "customer_id": "dup1"}], doubled).encode(),
        [(None, "unreadable_file")],
    )
    # Cut off in the middle of its last row.
    truncated = _csv_text("customers", [good["g11"], pii])
    plant(
        "2023-03-10.csv",
        truncated[: truncated.rindex(PLANTED_NAME) + 2].encode(),
        [(3, "malformed_row")],
    )
    plant(
        "2023-03-11.csv",
        _csv_text(
            "customers", [{**pii, "customer_id": "x1"}], ["customer_id", "first_name"]
        ).encode(),
        [(None, "missing_column")],
    )
    frame = pd.DataFrame([{**good["g12"], "preferred_categories": ["travel", "dining"]}])
    frame.to_parquet(folder / "2023-03-12.parquet")
    quarantined.add(("customers/2023-03-12.parquet", None, "unreadable_file"))
    pd.DataFrame([good["g13"]]).to_parquet(folder / "2023-03-13.Parquet")
    whole = pd.DataFrame([pii]).to_parquet()
    plant("2023-03-14.parquet", whole[: len(whole) // 2], [(None, "unreadable_file")])
    plant(
        "2023-03-15.csv.gz", gzip.compress(b"customer_id,email")[:-9], [(None, "unreadable_file")]
    )
    (folder / "notes.txt").write_text(f"ask {PLANTED_NAME} about the export\n")
    loaded = ["cust001", "cust002", "cust003", "g01", "g02", "g03", "g04", "g05", "g06"]
    loaded += ["g07", "g08", "g09", "g10", "g11", "g13"]
    return {
        "loaded": sorted(loaded),
        "quarantined": quarantined,
        "skipped": ["customers/notes.txt"],
    }


def _event(entity: str, key: str, at: str, **kw) -> dict:
    base = {
        "transactions": transaction(key, "cust001", at),
        "redemptions": {
            "redemption_id": key,
            "customer_id": "cust002",
            "reward_id": "rwd002",
            "redeemed_at": at,
            "points_spent": "50",
        },
        "engagement_events": {
            "event_id": key,
            "customer_id": "cust001",
            "event_type": "open",
            "occurred_at": at,
            "message_id": "m1",
            "campaign": "spring",
            "channel": "email",
        },
    }[entity]
    return {**base, **kw}


def write_every_reason_landing(data_dir: Path) -> None:
    """The broken landing plus event and snapshot rows breaking every rule the loader
    applies, in CSV (clean and careful paths) and Parquet: every quarantine reason occurs."""
    write_broken_landing(data_dir)
    write_rows(
        data_dir,
        "customers",
        "2023-03-16.csv",
        [
            customer("m1", email="Not-An-Email"),
            customer("m2", email=""),
            customer("g01"),  # repeats another file's
            customer("m3", signup_at="yesterday"),
            customer("m4", tier="Diamond", timezone="Mars/Base", marketing_opt_in="perhaps"),
            customer("m5", email=" M5@Example.COM ", tier="SILVER", points_balance="1.5"),
        ],
    )
    write_rows(
        data_dir,
        "rewards",
        "rewards.csv",
        [
            {"reward_id": "rwd001", "name": "Flight", "category": "travel", "points_cost": "500"},
            {"reward_id": "rwd002", "name": "Coffee", "category": "dining", "points_cost": "50"},
            {"reward_id": "rwd002", "name": "Again", "category": "dining", "points_cost": "50"},
            {"reward_id": "rwd003", "name": "", "category": "dining", "points_cost": "50"},
            {"reward_id": "rwd004", "name": "Zero", "category": "dining", "points_cost": "0"},
            {"reward_id": "rwd005", "name": "Hex", "category": "x", "points_cost": "0x10"},
            {"reward_id": "rwd006", "name": "Big", "category": "x", "points_cost": "1e30"},
            {"reward_id": "rwd007", "name": "Lots", "category": "x", "points_cost": "1.0e3"},
            {
                "reward_id": "rwd008",
                "name": "Pad",
                "category": " x ",
                "points_cost": " 7 ",
                "inventory": "-1",
                "min_tier": "Diamond",
                "active": "maybe",
            },
        ],
    )
    for entity in ("transactions", "redemptions", "engagement_events"):
        rows = [
            _event(entity, "ok1", "2023-03-02T10:00:00Z"),
            _event(entity, "ok1", "2023-03-02T11:00:00Z"),  # repeated in the file
            _event(entity, "ok2", "yesterday"),
            _event(entity, "ok3", "2023-02-30T10:00:00Z"),
            _event(entity, "ok4", "2999-03-02T10:00:00Z"),
            _event(entity, "ok5", "1850-03-02T10:00:00Z"),
            _event(entity, "", "2023-03-02T10:00:00Z"),
            _event(entity, "ok6", "2023-03-09T10:00:00Z"),  # far from its file's day
            _event(entity, "ok7", "2023-03-01T23:30:00-02:00"),  # the next day in UTC
            _event(entity, "ok8", "2023-03-02 10:00:00"),
            _event(entity, "ok9", "2023-03-02T10:00:00.123456+01:00"),
            _event(entity, "ok10", "epoch"),
            _event(entity, "t-03-01", "2023-03-02T12:00:00Z"),  # repeats another file's
            _event(entity, "ok11", "", customer_id=""),
        ]
        if entity == "transactions":
            rows += [
                _event(entity, "n1", "2023-03-02T10:00:00Z", amount="ten"),
                _event(entity, "n2", "2023-03-02T10:00:00Z", amount="1_000"),
                _event(entity, "n3", "2023-03-02T10:00:00Z", amount="inf"),
                _event(entity, "n4", "2023-03-02T10:00:00Z", amount=".5", points_earned="x"),
                _event(entity, "n5", "2023-03-02T10:00:00Z", amount="-3.5e2", points_earned="2.5"),
                _event(entity, "n6", "2023-03-02T10:00:00Z", amount="+1.", points_earned="1e3"),
                _event(entity, "n7", "2023-03-02T10:00:00Z", amount="", points_earned="0x1"),
            ]
        if entity == "redemptions":
            rows += [
                _event(entity, "u1", "2023-03-02T10:00:00Z", reward_id="rwd404"),
                _event(entity, "u2", "2023-03-02T10:00:00Z", points_spent="-1"),
                _event(entity, "u3", "2023-03-02T10:00:00Z", reward_id=""),
            ]
        if entity == "engagement_events":
            rows += [
                _event(entity, "v1", "2023-03-02T10:00:00Z", event_type="wave"),
                _event(entity, "v2", "2023-03-02T10:00:00Z", event_type="CLICK"),
                _event(entity, "v3", "2023-03-02T10:00:00Z", event_type=""),
                _event(entity, "v4", "2023-03-02T10:00:00Z", campaign="a\x00b"),
            ]
        write_rows(data_dir, entity, "2023-03-02.csv", rows)
        write_rows(
            data_dir,
            entity,
            "2023-03-01.csv",
            [_event(entity, "t-03-01", "2023-03-01T10:00:00Z")],
        )
        write_rows(
            data_dir, entity, "2023-02-28.csv", [_event(entity, "early", "2023-02-28T10:00:00Z")]
        )
        # The careful path in a dated file: bad lines belong to the file's day.
        good = _line(entity, _event(entity, "c1", "2023-03-03T10:00:00Z"))
        body = _csv_text(entity, [_event(entity, "c0", "2023-03-03T09:00:00Z")])
        body += good + ",surplus\n" + good.replace("c1", "c\x002") + "\n"
        folder = Path(data_dir) / entity
        (folder / "2023-03-03.csv").write_bytes(
            body.encode() + good.replace("c1", "cé").encode("latin-1") + b"\n" + b'"c3,x\n'
        )
        # A file without a date in its name: rows belong to their own days.
        pd.DataFrame(
            [
                _event(entity, "p1", "2023-03-01T08:00:00Z"),
                _event(entity, "p1", "2023-03-03T08:00:00Z"),
                _event(entity, "p2", "not a date"),
            ]
        ).to_parquet(folder / "extra.parquet")
