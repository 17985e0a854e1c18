"""`Warehouse.frame` on DuckDB reads through Arrow and gives the frame DuckDB's `fetch_df`
gives, column for column, whatever the mix of types."""

import pandas as pd
import sqlalchemy as sa

# Every kind `arrow_frame` sends one way or the other: strings with and without values,
# integers and booleans with and without a missing one, dates, times with and without a
# zone, decimals, a 128-bit sum, doubles, and a name the result repeats.
MIXED = """
SELECT * FROM (VALUES
    ('c1', NULL, 1, 2, TRUE, CAST(NULL AS BOOLEAN), DATE '2024-01-02',
     TIMESTAMP '2024-01-02 03:04:05', TIMESTAMPTZ '2024-01-02 03:04:05+00',
     CAST(1.25 AS DECIMAL(18, 4)), 0.5, 'x'),
    (NULL, NULL, 3, NULL, FALSE, TRUE, NULL, NULL, NULL, NULL, NULL, 'y'),
    ('c3', NULL, 5, 6, TRUE, FALSE, DATE '2024-03-04', TIMESTAMP '2024-03-04 00:00:00',
     TIMESTAMPTZ '2024-03-04 00:00:00+00', CAST(-2.5 AS DECIMAL(18, 4)), -1.0, 'z')
) t(id, nothing, n, n_missing, flag, flag_missing, day, seen_at, seen_at_zoned, amount, share, dup)
"""


def _fetch_df(warehouse, sql: str) -> pd.DataFrame:
    with warehouse.engine.connect() as conn:
        return conn.execute(sa.text(sql)).cursor.fetch_df()


def test_frame_is_duckdbs_own_frame_for_every_kind_of_column(duckdb_warehouse):
    queries = [
        MIXED,
        # A repeated name, a 128-bit sum of integers, an empty result.
        f"SELECT id, SUM(n) AS total, id FROM ({MIXED}) GROUP BY id ORDER BY id",
        f"SELECT * FROM ({MIXED}) WHERE n > 100",
    ]
    for sql in queries:
        expected = _fetch_df(duckdb_warehouse, sql)
        got = duckdb_warehouse.frame(sql)
        assert list(got.columns) == list(expected.columns)
        pd.testing.assert_frame_equal(got, expected)
    mixed = duckdb_warehouse.frame(MIXED)
    # Not a frame of one kind: both conversions took part.
    assert str(mixed["id"].dtype) != "object" and mixed["nothing"].isna().all()
    assert str(mixed["n_missing"].dtype) == "Int32" and mixed["n"].dtype == "int32"
