"""The warehouse for analysts and BI tools: one DuckDB file with a view per table, and a Python API.

    import imgrec.warehouse
    wh = imgrec.warehouse.open("warehouse")            # or "s3://bucket/prefix", or an Iceberg warehouse
    tags = wh.table("tags", api="image_tagging", run_date="2026-11-28", key_prefix="shop/")  # pandas
    wh.sql("SELECT tag_en, count(*) FROM tags GROUP BY 1 ORDER BY 2 DESC LIMIT 10")          # pandas

A folder output's `imgrec.duckdb` holds one view per table (`images`, `tags`, ..., `runs`) over the Parquet
files (Hive partitions by run date, files of every run), refreshed after each run: a BI tool with a DuckDB
connector (Metabase, Superset, Tableau through JDBC/ODBC, DBeaver) opens that one file. The file is
replaced atomically, so a tool that has the old one open keeps reading it. The views name the Parquet
folders by absolute path: after moving the warehouse, `imgrec sql` (or `refresh`) writes them again.
With Iceberg tables DuckDB has no reader offline (its iceberg extension is downloaded), so the file holds
each table's current snapshot copied in through pyiceberg.

Three readers behind one API, each pushing the filters into the scan: DuckDB over a folder's Parquet files,
pyarrow's dataset over a bucket's (DuckDB's S3 support is an extension it downloads), pyiceberg for Iceberg.
"""
from __future__ import annotations

import logging
import os
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

from imgrec.schemas.tables import TABLES

CATALOG_FILE = "imgrec.duckdb"
log = logging.getLogger("imgrec.warehouse")


def _literal(text: str) -> str:
    """A SQL string literal (DDL takes no bound parameters): quotes doubled, nothing else special."""
    return "'" + text.replace("'", "''") + "'"


def _parquet(out: Path, table: str, damaged: list[str] = ()) -> str:
    """The table's files for DuckDB: a glob over its partitions, or, when some file is damaged, the list of
    the readable ones (a torn file would fail every query; tasks/damage.py moves it aside at the next run)."""
    if any(d.startswith(f"{table}/") for d in damaged):
        where = "[" + ", ".join(_literal(str(out.resolve() / f)) for f in _table_files(out, table, damaged)) + "]"
    else:
        where = _literal(str(out.resolve() / table / '**' / '*.parquet'))
    return f"read_parquet({where}, hive_partitioning = true, union_by_name = true)"


def _table_files(out: Path, table: str, damaged: list[str] = ()) -> list[str]:
    """The table's readable files, as names under `out`."""
    names = (p.relative_to(out).as_posix() for p in sorted((out / table).glob("run_date=*/*.parquet")))
    skip = set(damaged)
    return [name for name in names if name not in skip]


def damaged_files(out: Path) -> list[str]:
    """The folder's table files that cannot be read, each named once on stderr's log."""
    from imgrec.tasks.damage import damaged_table_files

    damaged = damaged_table_files(out)
    for name in damaged:
        log.warning("skipped a damaged table file (the next run moves it aside and redoes its images): %s", name)
    return damaged


def _is_bucket(out: str | Path) -> bool:
    return str(out).startswith(("s3://", "obs://"))


def detect_format(out: str | Path) -> str:
    """parquet when the output holds Parquet table files, else iceberg when it holds Iceberg tables."""
    from imgrec.connectors.output import open_output

    output = open_output(str(out))
    if any(output.list(table) for table in TABLES):
        return "parquet"
    return "iceberg" if output.list("iceberg") else "parquet"


def refresh(out: str | Path, table_format: str | None = None, iceberg_catalog: str | None = None,
            damaged: list[str] | None = None) -> Path | None:
    """(Re)write `out/imgrec.duckdb` for a folder output (None for a bucket: BI tools read the bucket).
    Parquet: a view per table that has files; Iceberg: each table's current rows. Atomic: a new file
    replaces the old. `damaged`: the folder's unreadable table files, when the caller found them already."""
    import duckdb

    if _is_bucket(out):
        return None
    out = Path(out)
    table_format = table_format or detect_format(out)
    target = out / CATALOG_FILE
    for stale in out.glob(f".{CATALOG_FILE}.*.tmp"):  # left by a process killed while refreshing
        if time.time() - stale.stat().st_mtime > 600:
            stale.unlink(missing_ok=True)
    tmp = out / f".{CATALOG_FILE}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    if damaged is None:
        damaged = damaged_files(out) if table_format != "iceberg" else []
    con = duckdb.connect(str(tmp))
    try:
        for table in TABLES:
            if table_format == "iceberg":
                from imgrec.tasks.iceberg import IcebergTables

                rows = IcebergTables(str(out.resolve()), iceberg_catalog).scan(table)
                con.register("_rows", rows)
                con.execute(f"CREATE TABLE {table} AS SELECT * FROM _rows")
                con.unregister("_rows")
            elif _table_files(out, table, damaged):  # a table with readable files
                con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {_parquet(out, table, damaged)}")
    finally:
        con.close()
    os.replace(tmp, target)
    return target


class Warehouse:
    def __init__(self, out: str | Path, table_format: str | None = None, iceberg_catalog: str | None = None):
        self.bucket = _is_bucket(out)
        self.out = str(out).rstrip("/") if self.bucket else Path(out).resolve()
        if not self.bucket and not self.out.is_dir():
            raise FileNotFoundError(f"no warehouse at {out}")
        self.table_format = table_format or ("iceberg" if iceberg_catalog else detect_format(self.out))
        self.iceberg_catalog = iceberg_catalog
        # a folder's unreadable table files, found once: every query of this warehouse reads around them
        self.damaged = damaged_files(self.out) if not self.bucket and self.table_format != "iceberg" else []
        if not self.bucket:  # the tables there are now, where they are now
            refresh(self.out, self.table_format, iceberg_catalog, self.damaged)

    def sql(self, query: str, params: dict[str, Any] | list[Any] | None = None):
        """A query over the tables (`tags`, `images`, ...) as a pandas DataFrame."""
        import duckdb

        if not self.bucket:
            con = duckdb.connect(str(self.out / CATALOG_FILE), read_only=True)
        else:  # each table read whole through pyarrow/pyiceberg, queried in memory
            con = duckdb.connect()
            for table in TABLES:
                try:
                    con.register(table, self.arrow(table))
                except FileNotFoundError:
                    continue
        try:
            return con.execute(query, params).df()
        finally:
            con.close()

    def _filters(self, table: str, columns: list[str] | None, **given: Any) -> tuple[list[str], dict[str, Any]]:
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
        fields = set(TABLES[table].names) | {"run_date"}
        unknown = [c for c in columns or [] if c != "*" and c not in fields]
        if unknown:
            raise KeyError(f"{table} has no column {', '.join(unknown)}")
        filters = {}
        for name, value in given.items():
            if value is None:
                continue
            column = "key" if name == "key_prefix" else name
            if column not in fields:
                raise KeyError(f"{table} has no column {column}")
            filters[name] = value.isoformat() if isinstance(value, (date, datetime)) else value
        return [c for c in columns or [] if c != "*"], filters

    def table(self, table: str, columns: list[str] | None = None, run_date: str | date | None = None,
              api: str | None = None, key_prefix: str | None = None, run_id: str | None = None):
        """One table as a pandas DataFrame, filtered where it is read (run date partitions, api, key prefix)."""
        return self.arrow(table, columns, run_date, api, key_prefix, run_id).to_pandas()

    def arrow(self, table: str, columns: list[str] | None = None, run_date: str | date | None = None,
              api: str | None = None, key_prefix: str | None = None, run_id: str | None = None):
        """The same as `table`, as a pyarrow Table."""
        wanted, filters = self._filters(table, columns, run_date=run_date, api=api, key_prefix=key_prefix,
                                        run_id=run_id)
        if self.table_format == "iceberg":
            from imgrec.tasks.iceberg import IcebergTables

            return IcebergTables(str(self.out), self.iceberg_catalog).scan(table, wanted or None, **filters)
        if self.bucket:
            return self._bucket_parquet(table, wanted, filters)
        return self._folder_parquet(table, wanted, filters)

    def _folder_parquet(self, table: str, wanted: list[str], filters: dict[str, Any]):
        import duckdb

        if not any((self.out / table).glob("run_date=*/*.parquet")):
            raise FileNotFoundError(f"no {table} files under {self.out}")
        where = ["starts_with(key, $key_prefix)" if n == "key_prefix" else f"{n} = ${n}" for n in filters]
        query = f"SELECT {', '.join(wanted) or '*'} FROM {_parquet(self.out, table, self.damaged)}"
        if where:
            query += " WHERE " + " AND ".join(where)  # pushed down: partitions and row groups are pruned
        relation = duckdb.connect().sql(query, params=filters)
        return relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()

    def _bucket_parquet(self, table: str, wanted: list[str], filters: dict[str, Any]):
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        filesystem, root = bucket_filesystem(self.out)
        # run_date typed as a date, as DuckDB reads a folder's partitions: one schema for every output
        partitioning = ds.partitioning(pa.schema([pa.field("run_date", pa.date32())]), flavor="hive")
        dataset = ds.dataset(f"{root}/{table}", filesystem=filesystem, format="parquet", partitioning=partitioning,
                             exclude_invalid_files=False)
        if not dataset.files:
            raise FileNotFoundError(f"no {table} files under {self.out}")
        expression = None
        for name, value in filters.items():
            term = (pc.starts_with(ds.field("key"), value) if name == "key_prefix"
                    else ds.field(name) == (date.fromisoformat(value) if name == "run_date" else value))
            expression = term if expression is None else expression & term
        return dataset.to_table(columns=wanted or None, filter=expression)


def bucket_filesystem(out: str):
    """(pyarrow S3 filesystem, bucket/prefix) for an s3:// or obs:// output: boto3's environment settings."""
    from pyarrow import fs

    from imgrec.connectors.buckets import bucket_address

    where = bucket_address(out)
    filesystem = fs.S3FileSystem(endpoint_override=where.endpoint, region=where.region,
                                 force_virtual_addressing=where.virtual)
    return filesystem, f"{where.bucket}/{where.prefix.strip('/')}".rstrip("/")


def open(out: str | Path, table_format: str | None = None,  # noqa: A001 - the analyst's spelling
         iceberg_catalog: str | None = None) -> Warehouse:
    return Warehouse(out, table_format, iceberg_catalog)
