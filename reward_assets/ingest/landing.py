"""Finding and reading landing files under DATA_DIR.

An entity lands as `DATA_DIR/<entity>.csv|.parquet` or as any number of such files under
`DATA_DIR/<entity>/`. A file whose name holds a date (`2023-03-01.csv`) is taken to hold
that day's rows, so a partition only reads the files of its days (and their neighbours,
for rows just across midnight); files without a date are read by every partition.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

SUFFIXES = (".csv", ".parquet")
_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")


class ContractError(ValueError):
    """A landing file that cannot be read under the contract at all (not a bad row)."""


@dataclass(frozen=True)
class LandingFile:
    path: Path
    name: str  # path relative to the data folder, as shown in quarantine rows
    day: dt.date | None


def _file_day(path: Path) -> dt.date | None:
    match = _DATE_IN_NAME.search(path.stem)
    if not match:
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        return None


def landing_files(data_dir: Path, entity: str) -> list[LandingFile]:
    data_dir = Path(data_dir)
    paths = [data_dir / f"{entity}{suffix}" for suffix in SUFFIXES]
    folder = data_dir / entity
    if folder.is_dir():
        paths += [p for p in folder.rglob("*") if p.suffix in SUFFIXES]
    return [
        LandingFile(p, p.relative_to(data_dir).as_posix(), _file_day(p))
        for p in sorted(paths)
        if p.is_file()
    ]


def files_for_window(
    files: list[LandingFile], start: dt.date, end: dt.date, first_day: dt.date | None = None
) -> list[LandingFile]:
    """Files that may hold rows dated in [start, end): undated ones and days next to it.

    The window that starts at `first_day` (the first partition) also takes every earlier
    dated file, whose rows it quarantines as before the first partition.
    """
    lo, hi = start - dt.timedelta(days=1), end + dt.timedelta(days=1)
    if first_day is not None and start <= first_day:
        lo = dt.date.min
    return [f for f in files if f.day is None or lo <= f.day < hi]


def read_landing_file(file: LandingFile, columns: list[str], required: list[str]) -> pd.DataFrame:
    """All contract columns as stripped strings ('' when absent), plus source_file/line.

    Values stay text here so that nothing is coerced before validation decides what a
    bad value is. Lines are 1-based file lines (the CSV header is line 1); for Parquet
    they are 1-based row numbers.
    """
    if file.path.suffix == ".csv":
        with file.path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        _require(file, header, required)
        table = pacsv.read_csv(
            file.path,
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        first_line = 2
    else:
        table = pq.read_table(file.path)
        _require(file, table.column_names, required)
        table = table.cast(pa.schema([(name, pa.string()) for name in table.column_names]))
        first_line = 1

    frame = pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    for name in columns:
        if name in table.column_names:
            values = table.column(name).to_pandas().fillna("").astype("string")
            frame[name] = values.str.strip()
        else:
            frame[name] = pd.Series("", index=frame.index, dtype="string")
    frame["source_file"] = file.name
    frame["source_line"] = frame.index + first_line
    return frame


def _require(file: LandingFile, header: list[str], required: list[str]) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise ContractError(
            f"{file.name}: missing required column(s) {', '.join(missing)}; "
            f"found {', '.join(header) or 'no header'}"
        )
