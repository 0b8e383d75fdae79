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

The readers are the table formats' own (tasks/formats/), each pushing the filters into the scan: DuckDB over
a folder's Parquet files, pyarrow's dataset over a bucket's, pyiceberg for Iceberg tables.
"""
from __future__ import annotations

import logging
import os
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

from imgrec.connectors.output import open_output
from imgrec.schemas.run import is_bucket
from imgrec.schemas.tables import TABLES
from imgrec.tasks.formats import TableFormat, detect, open_format

CATALOG_FILE = "imgrec.duckdb"
log = logging.getLogger("imgrec.warehouse")


def _reader(out: str | Path, table_format: str | None, iceberg_catalog: str | None) -> TableFormat:
    """The output's table format, named or found from what the output holds; its damaged files logged once."""
    output = open_output(str(out))
    name = table_format or ("iceberg" if iceberg_catalog else detect(output))
    reader = open_format(name, output, iceberg_catalog)
    for damaged in reader.damaged():
        log.warning("skipped a damaged table file (the next run moves it aside and redoes its images): %s", damaged)
    return reader


def refresh(out: str | Path, table_format: str | None = None, iceberg_catalog: str | None = None,
            reader: TableFormat | None = None) -> Path | None:
    """(Re)write `out/imgrec.duckdb` for a folder output (None for a bucket: BI tools read the bucket): each
    table as its format shows it to DuckDB. Atomic: a new file replaces the old."""
    import duckdb

    if is_bucket(str(out)):
        return None
    out = Path(out)
    reader = reader or _reader(out, table_format, iceberg_catalog)
    target = out / CATALOG_FILE
    for stale in out.glob(f".{CATALOG_FILE}.*.tmp"):  # left by a process killed while refreshing
        if time.time() - stale.stat().st_mtime > 600:
            stale.unlink(missing_ok=True)
    tmp = out / f".{CATALOG_FILE}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        for table in TABLES:
            reader.catalog_view(con, table)
    finally:
        con.close()
    os.replace(tmp, target)
    return target


class Warehouse:
    def __init__(self, out: str | Path, table_format: str | None = None, iceberg_catalog: str | None = None):
        self.bucket = is_bucket(str(out))
        self.out = str(out).rstrip("/") if self.bucket else Path(out).resolve()
        if not self.bucket and not self.out.is_dir():
            raise FileNotFoundError(f"no warehouse at {out}")
        # one reader for this warehouse: a folder's unreadable table files are found once, read around after
        self.reader = _reader(self.out, table_format, iceberg_catalog)
        self.table_format = self.reader.name
        if not self.bucket:  # the tables there are now, where they are now
            refresh(self.out, reader=self.reader)

    def sql(self, query: str, params: dict[str, Any] | list[Any] | None = None):
        """A query over the tables (`tags`, `images`, ...) as a pandas DataFrame."""
        import duckdb

        if not self.bucket:
            con = duckdb.connect(str(self.out / CATALOG_FILE), read_only=True)
        else:  # each table read whole through its format's reader, queried in memory
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
        return self.reader.scan(table, wanted or None, **filters)


    def similar(self, image: str | Path, top: int = 10, config: str | Path | None = None):
        """The catalog images nearest one image, most similar first, as a pandas DataFrame (key, similarity):
        `image` a key the catalog fingerprinted, or an image file's path (fingerprinted here as a run would,
        with `config`'s models); the image itself is not listed."""
        import tempfile

        import pandas as pd

        from imgrec.tasks.similar import CatalogIndex

        with tempfile.TemporaryDirectory() as tmp:
            index = CatalogIndex.load(self.reader.output, Path(tmp))
        vector, leave_out = index.vector(str(image)), str(image)
        if vector is None:
            if not Path(image).is_file():
                where = "no run has fingerprinted this catalog yet" if not len(index) else \
                    f"not a fingerprinted key of this catalog ({len(index)} are)"
                raise KeyError(f"{str(image)!r}: {where}, nor an image file")
            vector, leave_out = _fingerprint_file(Path(image), config), None
        return pd.DataFrame(index.nearest(vector, top, leave_out), columns=["key", "similarity"])


def _fingerprint_file(path: Path, config: str | Path | None):
    from imgrec.engines.fingerprint import of_bytes
    from imgrec.schemas.common import ANY_IMAGE, inspect_image
    from imgrec.settings import Settings

    data = path.read_bytes()
    return of_bytes(data, inspect_image(data, ANY_IMAGE), Path(Settings.load(config).models_dir)).vector


def open(out: str | Path, table_format: str | None = None,  # noqa: A001 - the analyst's spelling
         iceberg_catalog: str | None = None) -> Warehouse:
    return Warehouse(out, table_format, iceberg_catalog)
