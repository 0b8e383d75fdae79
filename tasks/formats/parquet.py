"""The `parquet` table format: Hive-partitioned Parquet files in the output (a folder or a bucket prefix).

    <table>/run_date=YYYY-MM-DD/<run_id>-s<NNNNN>.parquet   one file per shard and table
    <table>/run_date=YYYY-MM-DD/<run_id>-empty.parquet      an empty file, so a table no run filled reads

A staged shard file lands by a move (a folder's rename; a bucket's copy then delete). Read back with
DuckDB over a folder's files (partitions and row groups pruned) and pyarrow's dataset over a bucket's
(DuckDB's S3 support is an extension it downloads, and nothing is downloaded here).
"""
from __future__ import annotations

import functools
import io
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from imgrec.connectors.output import Output, local_copies
from imgrec.schemas.tables import STATE_SCHEMAS, TABLES, conform


def table_name(table: str, run_date: str, name: str) -> str:
    return f"{table}/run_date={run_date}/{name}.parquet"


def table_file(out: Path, table: str, run_date: str, name: str) -> Path:
    return out / table_name(table, run_date, name)


def write_table(path: Path | io.BytesIO, table: str, rows: list[dict[str, Any]]) -> None:
    """Rows of a table (or of the run state's `_ledger`, `_answers`) as one zstd Parquet file with its schema."""
    schema = TABLES[table] if table in TABLES else STATE_SCHEMAS[table]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, compression="zstd")


def parquet_bytes(table: str, rows: list[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    write_table(buffer, table, rows)
    return buffer.getvalue()


def readable(path: Path, required: list[str]) -> bool:
    """The file is Parquet whose footer reads and which has the `required` columns."""
    try:
        schema = pq.read_schema(path)
    except Exception:  # noqa: BLE001 - any failure to read the footer is damage
        return False
    return all(name in schema.names for name in required)


def damaged_table_files(root: Path) -> list[str]:
    """A folder output's unreadable table files, as output names (`tags/run_date=.../x.parquet`)."""
    found = []
    for table in TABLES:
        for path in sorted((root / table).glob("run_date=*/*.parquet")):
            if not readable(path, ["run_id"]):
                found.append(path.relative_to(root).as_posix())
    return found


def arrow_table(relation) -> pa.Table:
    """A DuckDB relation's rows as a pyarrow Table, whichever DuckDB (`arrow()` answers a reader since 1.4)."""
    return relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()


def _literal(text: str) -> str:
    """A SQL string literal (DDL takes no bound parameters): quotes doubled, nothing else special."""
    return "'" + text.replace("'", "''") + "'"


class ParquetFiles:
    name = "parquet"

    def __init__(self, output: Output, catalog: str | None = None):
        if catalog:
            raise ValueError("Parquet tables take no iceberg_catalog (it is for table_format iceberg)")
        self.output = output

    # ------------------------------------------------------------------------------------------ writing
    def prepare(self) -> None:
        pass  # the output was reached already (the run's lock is in it)

    def ensure(self, run_date: str, run_id: str) -> None:
        for table in TABLES:
            if not any(name.endswith(".parquet") for name in self.output.list(table)):
                self.output.put(table_name(table, run_date, f"{run_id}-empty"), parquet_bytes(table, []))

    def destination(self, table: str, run_date: str, shard: str) -> str:
        return table_name(table, run_date, shard)

    def owns(self, destination: str) -> bool:
        return destination.split("/")[0] in TABLES

    def land(self, staged: str, destination: str, shard: str) -> bool:
        return self.output.move(staged, destination)

    def append(self, table: str, run_date: str, name: str, data: bytes) -> None:
        self.output.put(table_name(table, run_date, name), data)

    # ------------------------------------------------------------------------------------------ reading
    @functools.cached_property
    def _damaged(self) -> list[str]:
        root = self.output.local_root
        return damaged_table_files(root) if root is not None else []

    def damaged(self) -> list[str]:
        """A folder's unreadable table files, found once per object: every read goes around them (the next
        run moves them aside, tasks/damage.py). A bucket's are not opened (each would cost a request)."""
        return self._damaged

    def _files(self, table: str) -> list[Path]:
        root = self.output.local_root
        skip = set(self.damaged())
        return [p for p in sorted((root / table).glob("run_date=*/*.parquet"))
                if p.relative_to(root).as_posix() not in skip]

    def _read_parquet(self, table: str) -> str | None:
        """DuckDB's reader of a folder's table: a glob over its partitions, or, when some file is damaged,
        the list of the readable ones (a torn file would fail every query). None: no readable file."""
        files = self._files(table)
        if not files:
            return None
        if any(d.startswith(f"{table}/") for d in self.damaged()):
            where = "[" + ", ".join(_literal(str(f)) for f in files) + "]"
        else:
            where = _literal(str(self.output.local_root / table / "**" / "*.parquet"))
        return f"read_parquet({where}, hive_partitioning = true, union_by_name = true)"

    def scan(self, table: str, columns: list[str] | None = None, **filters: Any) -> pa.Table:
        filters = {k: v for k, v in filters.items() if v is not None}
        if self.output.local_root is None:
            return self._scan_bucket(table, columns, filters)
        import duckdb

        source = self._read_parquet(table)
        if source is None:
            raise FileNotFoundError(f"no {table} files under {self.output.uri}")
        where = ["starts_with(key, $key_prefix)" if n == "key_prefix" else f"{n} = ${n}" for n in filters]
        query = f"SELECT {', '.join(columns or []) or '*'} FROM {source}"
        if where:
            query += " WHERE " + " AND ".join(where)  # pushed down: partitions and row groups are pruned
        params = {k: str(v) if isinstance(v, date) else v for k, v in filters.items()}
        return conform(table, arrow_table(duckdb.connect().sql(query, params=params)), columns)

    def _scan_bucket(self, table: str, columns: list[str] | None, filters: dict[str, Any]) -> pa.Table:
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        filesystem, root = bucket_filesystem(self.output.uri)
        # run_date typed as a date, as DuckDB reads a folder's partitions: one schema for every output
        partitioning = ds.partitioning(pa.schema([pa.field("run_date", pa.date32())]), flavor="hive")
        dataset = ds.dataset(f"{root}/{table}", filesystem=filesystem, format="parquet", partitioning=partitioning,
                             exclude_invalid_files=False)
        if not dataset.files:
            raise FileNotFoundError(f"no {table} files under {self.output.uri}")
        expression = None
        for name, value in filters.items():
            if name == "run_date":
                value = date.fromisoformat(str(value))
            term = pc.starts_with(ds.field("key"), value) if name == "key_prefix" else ds.field(name) == value
            expression = term if expression is None else expression & term
        return conform(table, dataset.to_table(columns=columns or None, filter=expression), columns)

    def run_view(self, con, view: str, table: str, run_id: str, run_date: str, work: Path) -> bool:
        names = [n for n in self.output.list(f"{table}/run_date={run_date}")
                 if PurePosixPath(n).name.startswith((f"{run_id}-", f"{run_id}."))]
        if not names:
            return False
        # The report asks several questions of one table: its files (final by now) are fetched once.
        files = local_copies(self.output, names, work, reuse=True)
        con.read_parquet([str(f) for f in files], hive_partitioning=True).create_view(view)
        return True

    def catalog_view(self, con, table: str) -> bool:
        source = self._read_parquet(table)
        if source is None:
            return False
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {source}")
        return True


def bucket_filesystem(out: str):
    """(pyarrow S3 filesystem, bucket/prefix) for an s3:// or obs:// output: boto3's environment settings."""
    from pyarrow import fs

    from imgrec.connectors.buckets import bucket_address

    where = bucket_address(out)
    filesystem = fs.S3FileSystem(endpoint_override=where.endpoint, region=where.region,
                                 force_virtual_addressing=where.virtual)
    return filesystem, f"{where.bucket}/{where.prefix.strip('/')}".rstrip("/")
