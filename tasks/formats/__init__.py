"""Table formats: where a shard's rows land, and how every table is read back.

One small protocol (`TableFormat`) and one module per format, its writer and its reader together:
`parquet.py` (Hive-partitioned Parquet files in the output) and `iceberg.py` (Apache Iceberg tables in a
catalog). A run picks its format once (`format_of(job)`). The shard commit protocol (tasks/writing.py)
stages every table as a Parquet file and asks the format to land it; the report, the gallery and the
analysts' warehouse (imgrec/warehouse.py) read through the same object.

A third format (Delta, say) is one module with a class like these, its name in FORMATS and in
`RunParameters.table_format`.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from imgrec.connectors.output import Output, open_output
from imgrec.schemas.tables import TABLES

from .iceberg import IcebergTables
from .parquet import ParquetFiles


class TableFormat(Protocol):
    name: str
    output: Output

    def prepare(self) -> None:
        """Before a run's first call: reach the tables' store (an Iceberg catalog out of reach fails the run
        before any image is sent)."""

    def ensure(self, run_date: str, run_id: str) -> None:
        """After a run: every table exists, so that a query over a table no run filled yet finds it (empty)."""

    def destination(self, table: str, run_date: str, shard: str) -> str:
        """What a shard's COMMIT marker names as the place of its staged file of `table`."""

    def owns(self, destination: str) -> bool:
        """Whether a COMMIT marker's destination is one this format lands."""

    def land(self, staged: str, destination: str, shard: str) -> bool:
        """Put one staged file into its table; False when an earlier, interrupted attempt did already."""

    def append(self, table: str, run_date: str, name: str, data: bytes) -> None:
        """One whole Parquet file of rows into `table` at once (a run's `runs` row); idempotent per name."""

    def scan(self, table: str, columns: list[str] | None = None, **filters: Any) -> pa.Table:
        """Rows of one table, filtered where they are read: run_id, run_date, api, key_prefix (None: any).
        Raises FileNotFoundError for a table that has no rows anywhere yet."""

    def run_view(self, con, view: str, table: str, run_id: str, run_date: str, work: Path) -> bool:
        """`view` in a DuckDB connection: one run's rows of `table`; False when it has none."""

    def catalog_view(self, con, table: str) -> bool:
        """`table` in the warehouse's DuckDB file (a view over the data, or a copy where DuckDB cannot read
        the format offline); False when the table has nothing to show."""

    def damaged(self) -> list[str]:
        """Table files that cannot be read, as output names (formats whose files a catalog tracks: [])."""


FORMATS: dict[str, type] = {"parquet": ParquetFiles, "iceberg": IcebergTables}


def open_format(name: str, output: Output | str, catalog: str | None = None) -> TableFormat:
    """A format over an output (an Output, or its location), for one run or one reader."""
    output = open_output(output) if isinstance(output, str) else output
    return FORMATS[name](output, catalog)


@functools.lru_cache(maxsize=16)
def _per_process(name: str, out: str, catalog: str | None) -> TableFormat:
    return open_format(name, open_output(out), catalog)


def format_of(job) -> TableFormat:
    """The run's format, one per process (an Iceberg catalog's connection is reused by every shard)."""
    return _per_process(job.table_format, job.out, job.iceberg_catalog)


def detect(output: Output) -> str:
    """parquet when the output holds Parquet table files, else iceberg when it holds Iceberg tables."""
    if any(output.list(table) for table in TABLES):
        return "parquet"
    return "iceberg" if output.list(IcebergTables.FOLDER) else "parquet"


RUN_TABLE = "run_table"  # what query_run's SQL reads: this run's rows of one table


def query_run(job, table: str, sql: str, **params: Any) -> list[tuple]:
    """`sql` reads this run's rows of `table` as `run_table`; the run id and `params` are bound."""
    import duckdb

    con = duckdb.connect()
    try:
        if not format_of(job).run_view(con, RUN_TABLE, table, job.run_id, job.run_date, job.work_dir / "tables"):
            return []
        return con.execute(sql, {"run_id": job.run_id, **params}).fetchall()
    finally:
        con.close()
