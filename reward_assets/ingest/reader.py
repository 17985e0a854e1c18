"""Reading one landing file into text columns, whatever state the file is in.

Every file comes out as an Arrow table of the contract's columns as text (NULL when the
file lacks an optional column) plus its 1-based line numbers, and a list of `Problem`s:
rows that could not be read (with their line) or the whole file (without one). Nothing
here raises on bad input, and no message built here holds a raw value: the readers'
own errors quote the offending line, so they are caught and replaced.

A CSV file takes the fast path (Arrow's multi-threaded reader) when it is clean: UTF-8,
one record per physical line, every row the header's width. Any doubt sends it to the
careful path, which reads it physical line by physical line and so can name the line of
every bad row and go on after it.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from reward_assets.ingest.contract import MAX_VALUE_LENGTH, Entity
from reward_assets.ingest.landing import LandingFile
from reward_assets.ingest.quarantine import QuarantineReason

LINE = "__line"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Problem:
    """A row (line set) or a whole file (line None) that could not be read."""

    reason: QuarantineReason
    detail: str
    line: int | None = None
    # The row's fields as read, for the quarantine's masked raw values.
    fields: tuple[str, ...] = ()


@dataclass
class ReadResult:
    table: pa.Table  # the contract's columns as text, plus LINE
    problems: list[Problem]

    @property
    def rows(self) -> int:
        return self.table.num_rows


def empty_table(entity: Entity) -> pa.Table:
    return pa.table(
        {
            **{c: pa.array([], pa.string()) for c in entity.column_names},
            LINE: pa.array([], pa.int64()),
        }
    )


def _unreadable(entity: Entity, reason: QuarantineReason, detail: str) -> ReadResult:
    return ReadResult(empty_table(entity), [Problem(reason, detail)])


def read_file(file: LandingFile, entity: Entity) -> ReadResult:
    """The rows of `file` as text, and what could not be read. Never raises on content."""
    try:
        if file.format == "parquet":
            return _read_parquet(file, entity)
        data = file.path.read_bytes()
        if file.compressed:
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        return _unreadable(entity, QuarantineReason.UNREADABLE_FILE, _io_detail(file, error))
    return read_csv_bytes(data, entity)


def _io_detail(file: LandingFile, error: Exception) -> str:
    kind = "gzip data" if file.compressed else "file"
    return f"cannot read the {kind}: {type(error).__name__}"


def read_csv_bytes(data: bytes, entity: Entity) -> ReadResult:
    if data[:2] in _UTF16_BOMS:
        try:
            data = data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            return _unreadable(
                entity, QuarantineReason.UNREADABLE_FILE, "starts as UTF-16 but does not decode"
            )
    data = data.removeprefix(_UTF8_BOM)
    first, _, body = data.partition(b"\n")
    header, problem = _header(first, entity)
    if problem:
        return ReadResult(empty_table(entity), [problem])
    fast = _fast_csv(body, header, entity)
    return fast if fast is not None else _careful_csv(data.splitlines()[1:], header, entity)


def _header(first: bytes, entity: Entity) -> tuple[list[str], Problem | None]:
    unreadable = QuarantineReason.UNREADABLE_FILE
    if not first.strip():
        return [], Problem(unreadable, "no header line")
    try:
        text = first.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        return [], Problem(unreadable, "the header is not UTF-8 (or UTF-16 with a BOM)")
    names = [name.strip() for name in next(csv.reader([text]), [])]
    repeated = sorted(name for name, n in Counter(names).items() if n > 1)
    if repeated:
        return names, Problem(unreadable, f"column(s) {', '.join(repeated)} repeated in the header")
    missing = [c for c in entity.required if c not in names]
    if missing:
        found = ", ".join(n for n in names if n in entity.column_names) or "none of the contract's"
        return names, Problem(
            QuarantineReason.MISSING_COLUMN,
            f"missing required column(s) {', '.join(missing)}; found {found}",
        )
    return names, None


def contract_table(entity: Entity, columns: dict[str, pa.Array], lines: pa.Array) -> pa.Table:
    """The contract's columns as text with surrounding whitespace trimmed (NULL for a
    column the file lacks), plus the lines."""
    n = len(lines)
    arrays = {
        c: pc.utf8_trim_whitespace(columns[c]) if c in columns else pa.nulls(n, pa.string())
        for c in entity.column_names
    }
    return pa.table({**arrays, LINE: lines})


def _fast_csv(body: bytes, header: list[str], entity: Entity) -> ReadResult | None:
    """Arrow's reader on a file that reads cleanly, one record per line; else None."""
    # A lone carriage return ends a line for some readers and not others: be careful.
    if body.count(b"\r") != body.count(b"\r\n"):
        return None
    lines = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
    wanted = [c for c in header if c in entity.column_names]
    try:
        table = pacsv.read_csv(
            io.BytesIO(body),
            read_options=pacsv.ReadOptions(column_names=header),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                include_columns=wanted,
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowException, ValueError):
        return None
    # A blank line or a quoted line break makes rows and lines differ; the careful path
    # numbers those correctly.
    if table.num_rows != lines:
        return None
    columns = {name: table.column(name) for name in wanted}
    return ReadResult(
        contract_table(entity, columns, pa.array(np.arange(2, lines + 2), pa.int64())), []
    )


def _record_ends(quotes: np.ndarray) -> np.ndarray:
    """For each line, the index of the next line after it with an odd quote count.

    A record starting on a line with an odd count of quotes runs to the next such line;
    -1 where there is none (an unterminated quote).
    """
    odd = np.flatnonzero(quotes % 2 == 1)
    position = np.searchsorted(odd, np.arange(len(quotes)) + 1)
    ends = np.full(len(quotes), -1, dtype=np.int64)
    found = position < len(odd)
    ends[found] = odd[position[found]]
    return ends


def _careful_csv(lines: list[bytes], header: list[str], entity: Entity) -> ReadResult:
    """Physical line by line: a record is a line, or the lines a quoted line break joins."""
    width = len(header)
    quotes = np.fromiter((line.count(b'"') for line in lines), dtype=np.int64, count=len(lines))
    ends = _record_ends(quotes)
    wanted = {name: i for i, name in enumerate(header) if name in entity.column_names}
    values: dict[str, list[str | None]] = {name: [] for name in wanted}
    numbers: list[int] = []
    problems: list[Problem] = []
    i = 0
    while i < len(lines):
        line_no = i + 2  # the header is line 1
        if quotes[i] % 2:
            end = int(ends[i])
            if end < 0:
                problems.append(
                    _row_problem(
                        QuarantineReason.MALFORMED_ROW, "unterminated quote", lines[i], line_no
                    )
                )
                i += 1
                continue
            raw = b"\n".join(lines[i : end + 1])
            following = end + 1
        else:
            raw, following = lines[i], i + 1
        if not raw.strip():
            i = following
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(
                _row_problem(
                    QuarantineReason.INVALID_ENCODING, "not UTF-8 text", raw, line_no, decoded=False
                )
            )
            i = following
            continue
        fields = _fields(text)
        if fields is None and len(text) > MAX_VALUE_LENGTH:
            # The csv module refuses a field this long; so does the contract.
            problems.append(
                _row_problem(
                    QuarantineReason.OVERSIZED_VALUE,
                    f"a value longer than {MAX_VALUE_LENGTH} characters",
                    raw,
                    line_no,
                )
            )
            i = following
            continue
        if fields is None or len(fields) != width:
            if following > i + 1:
                # Lines a quote joined that make no valid row: the quote was a stray one,
                # so the lines after it are read on their own.
                following = i + 1
            count = f"{len(fields)} fields where the header has {width}" if fields else "not CSV"
            problems.append(_row_problem(QuarantineReason.MALFORMED_ROW, count, raw, line_no))
            i = following
            continue
        for name, position in wanted.items():
            values[name].append(fields[position])
        numbers.append(line_no)
        i = following
    columns = {name: pa.array(column, pa.string()) for name, column in values.items()}
    return ReadResult(contract_table(entity, columns, pa.array(numbers, pa.int64())), problems)


def _fields(text: str) -> list[str] | None:
    """The fields of one CSV record, or None if `text` is not exactly one record."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


def _row_problem(
    reason: QuarantineReason, detail: str, raw: bytes, line: int, decoded: bool = True
) -> Problem:
    text = raw.decode("utf-8", errors="replace")
    fields = (_fields(text) if decoded else None) or [text]
    return Problem(reason, detail, line, tuple(fields))


# Arrow types whose values read as one text each; nested ones (lists, structs, maps) do not.
def _scalar(arrow_type: pa.DataType) -> bool:
    return not pa.types.is_nested(arrow_type)


def _read_parquet(file: LandingFile, entity: Entity) -> ReadResult:
    unreadable = QuarantineReason.UNREADABLE_FILE
    try:
        parquet = pq.ParquetFile(file.path)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as error:
        return _unreadable(
            entity, unreadable, f"not a readable Parquet file ({type(error).__name__})"
        )
    names = schema.names
    repeated = sorted(name for name, n in Counter(names).items() if n > 1)
    if repeated:
        return _unreadable(entity, unreadable, f"column(s) {', '.join(repeated)} repeated")
    missing = [c for c in entity.required if c not in names]
    if missing:
        return _unreadable(
            entity,
            QuarantineReason.MISSING_COLUMN,
            f"missing required column(s) {', '.join(missing)}",
        )
    wanted = [c for c in entity.column_names if c in names]
    nested = [c for c in wanted if not _scalar(schema.field(c).type)]
    if nested:
        kinds = ", ".join(f"{c} ({schema.field(c).type})" for c in nested)
        return _unreadable(
            entity, unreadable, f"column(s) {kinds} hold lists or records, not values"
        )
    try:
        table = parquet.read(columns=wanted)
        columns = {c: table.column(c).cast(pa.string()) for c in wanted}
    except (pa.ArrowException, OSError) as error:
        return _unreadable(
            entity, unreadable, f"cannot read the Parquet data ({type(error).__name__})"
        )
    lines = pa.array(np.arange(1, table.num_rows + 1), pa.int64())
    return ReadResult(contract_table(entity, columns, lines), [])
