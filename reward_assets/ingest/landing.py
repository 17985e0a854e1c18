"""Finding landing files under DATA_DIR.

An entity lands as `DATA_DIR/<entity>.csv|.csv.gz|.parquet` or as any number of such
files under `DATA_DIR/<entity>/` (extensions in any case; stray spaces around a name are
ignored). A file whose name holds a date (`2023-03-01.csv`) is taken to hold that day's
rows, so a partition only reads the files of its days (and their neighbours, for rows
just across midnight); files without a date are read by every partition. Anything else
in an entity's folder is not read, and is reported so that no file is skipped unseen.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

# Recognised endings (lower case) and what they hold: (format, gzip-compressed).
FORMATS = {".csv": ("csv", False), ".csv.gz": ("csv", True), ".parquet": ("parquet", False)}
_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")


class ContractError(ValueError):
    """Input the contract cannot take at all (no file of an entity that must exist)."""


@dataclass(frozen=True)
class LandingFile:
    path: Path
    name: str  # path relative to the data folder, as shown in quarantine rows
    day: dt.date | None
    format: str = "csv"
    compressed: bool = False


@dataclass(frozen=True)
class LandingScan:
    files: list[LandingFile]
    # Files in the entity's folder that are not read (relative to the data folder).
    skipped: list[str]


def _format(path: Path) -> tuple[str, bool] | None:
    name = path.name.strip().lower()
    for suffix, kind in sorted(FORMATS.items(), key=lambda item: -len(item[0])):
        if name.endswith(suffix):
            return kind
    return None


def _file_day(path: Path) -> dt.date | None:
    match = _DATE_IN_NAME.search(path.name.strip())
    if not match:
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        return None


def _landing_file(data_dir: Path, path: Path, kind: tuple[str, bool]) -> LandingFile:
    name = path.relative_to(data_dir).as_posix()
    return LandingFile(path, name, _file_day(path), *kind)


def scan_landing(data_dir: Path, entity: str) -> LandingScan:
    """The files of `entity` that will be read, in name order, and those that will not."""
    data_dir = Path(data_dir)
    found: list[LandingFile] = []
    skipped: list[str] = []
    if data_dir.is_dir():
        for path in data_dir.iterdir():
            kind = _format(path)
            own = path.name.strip().lower() in {entity + suffix for suffix in FORMATS}
            if kind and own and path.is_file():
                found.append(_landing_file(data_dir, path, kind))
    folder = data_dir / entity
    if folder.is_dir():
        for path in folder.rglob("*"):
            if not path.is_file():
                continue
            kind = _format(path)
            if kind:
                found.append(_landing_file(data_dir, path, kind))
            else:
                skipped.append(path.relative_to(data_dir).as_posix())
    return LandingScan(sorted(found, key=lambda f: f.name), sorted(skipped))


def landing_files(data_dir: Path, entity: str) -> list[LandingFile]:
    return scan_landing(data_dir, entity).files


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
