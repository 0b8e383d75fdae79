"""The warehouse for analysts and BI tools: one DuckDB file with a view per table, and a Python API.

    import imgrec.warehouse
    wh = imgrec.warehouse.open("warehouse")
    tags = wh.table("tags", api="image_tagging", run_date="2026-11-28", key_prefix="shop/")  # pandas
    wh.sql("SELECT tag_en, count(*) FROM tags GROUP BY 1 ORDER BY 2 DESC LIMIT 10")          # pandas

`warehouse/imgrec.duckdb` holds one view per table (`images`, `tags`, ..., `runs`) over the Parquet files
(Hive partitions by run date, files of every run), refreshed after each run: a BI tool with a DuckDB
connector (Metabase, Superset, Tableau through JDBC/ODBC, DBeaver) opens that one file. The file is
replaced atomically, so a tool that has the old one open keeps reading it. The views name the Parquet
folders by absolute path: after moving the warehouse, `imgrec sql` (or `refresh`) writes them again.
"""
from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

from imgrec.schemas.tables import TABLES

CATALOG_FILE = "imgrec.duckdb"


def _literal(text: str) -> str:
    """A SQL string literal (DDL takes no bound parameters): quotes doubled, nothing else special."""
    return "'" + text.replace("'", "''") + "'"


def _parquet(out: Path, table: str) -> str:
    return f"read_parquet({_literal(str(out.resolve() / table / '**' / '*.parquet'))}, hive_partitioning = true, " \
           "union_by_name = true)"


def refresh(out: str | Path) -> Path:
    """(Re)write `out/imgrec.duckdb`: a view per table that has files. Atomic: a new file replaces the old."""
    import duckdb

    import time

    out = Path(out)
    target = out / CATALOG_FILE
    for stale in out.glob(f".{CATALOG_FILE}.*.tmp"):  # left by a process killed while refreshing
        if time.time() - stale.stat().st_mtime > 600:
            stale.unlink(missing_ok=True)
    tmp = out / f".{CATALOG_FILE}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        for table in TABLES:
            if any((out / table).glob("run_date=*/*.parquet")):
                con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {_parquet(out, table)}")
    finally:
        con.close()
    os.replace(tmp, target)
    return target


class Warehouse:
    def __init__(self, out: str | Path):
        self.out = Path(out)
        if not self.out.is_dir():
            raise FileNotFoundError(f"no warehouse at {out}")
        refresh(self.out)  # views for every table there is now, and for where the warehouse is now

    def sql(self, query: str, params: dict[str, Any] | list[Any] | None = None):
        """A query over the views (`tags`, `images`, ...) as a pandas DataFrame."""
        import duckdb

        con = duckdb.connect(str(self.out / CATALOG_FILE), read_only=True)
        try:
            return con.execute(query, params).df()
        finally:
            con.close()

    def _filtered(self, table: str, columns: list[str] | None, run_date: str | date | None, api: str | None,
                  key_prefix: str | None, run_id: str | None) -> tuple[str, dict[str, Any]]:
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
        fields = set(TABLES[table].names) | {"run_date"}
        wanted = columns or ["*"]
        unknown = [c for c in wanted if c != "*" and c not in fields]
        if unknown:
            raise KeyError(f"{table} has no column {', '.join(unknown)}")
        where, params = [], {}
        for name, value in (("run_date", run_date), ("api", api), ("run_id", run_id)):
            if value is not None:
                if name not in fields:
                    raise KeyError(f"{table} has no column {name}")
                where.append(f"{name} = ${name}")
                params[name] = value.isoformat() if isinstance(value, (date, datetime)) else value
        if key_prefix is not None:
            where.append("starts_with(key, $key_prefix)")
            params["key_prefix"] = key_prefix
        select = ", ".join(wanted)
        query = f"SELECT {select} FROM {_parquet(self.out, table)}"
        if where:
            query += " WHERE " + " AND ".join(where)  # pushed down: partitions and row groups are pruned
        return query, params

    def table(self, table: str, columns: list[str] | None = None, run_date: str | date | None = None,
              api: str | None = None, key_prefix: str | None = None, run_id: str | None = None):
        """One table as a pandas DataFrame, filtered where it is read (run date partitions, api, key prefix)."""
        return self._read(table, columns, run_date, api, key_prefix, run_id).df()

    def arrow(self, table: str, columns: list[str] | None = None, run_date: str | date | None = None,
              api: str | None = None, key_prefix: str | None = None, run_id: str | None = None):
        """The same as `table`, as a pyarrow Table."""
        relation = self._read(table, columns, run_date, api, key_prefix, run_id)
        return relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()

    def _read(self, table, columns, run_date, api, key_prefix, run_id):
        import duckdb

        query, params = self._filtered(table, columns, run_date, api, key_prefix, run_id)
        if not any((self.out / table).glob("run_date=*/*.parquet")):
            raise FileNotFoundError(f"no {table} files under {self.out}")
        con = duckdb.connect()
        return con.sql(query, params=params)


def open(out: str | Path) -> Warehouse:  # noqa: A001 - the analyst's spelling: imgrec.warehouse.open(out)
    return Warehouse(out)
