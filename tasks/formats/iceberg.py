"""Apache Iceberg tables (pyiceberg): the `iceberg` table format, for engines that read through a catalog.

One Iceberg table per pipeline table (`imgrec.tags`, `imgrec.images`, ...), with the schemas of
`schemas/tables.py` plus a `run_date` column, partitioned by it (identity). Data and metadata files live
under `<out>/iceberg/` (a folder, or the bucket: `s3://...`, OBS through its S3 endpoint); the catalog is a
SQL database (SQLite under the folder output by default; Postgres or any SQLAlchemy URL when several
machines write) or a REST catalog.

Each shard commits one append per table, the shard's name in the snapshot summary (`imgrec.shard`). Before
appending, the table's history is checked for that name: a shard finished after a crash, or retried, never
appends twice. Commits race optimistically (the catalog swaps the metadata pointer only if nobody else did):
a conflict reloads the table, checks again and retries, so concurrent workers lose nothing.

A shard's staged file is named in its COMMIT marker as `iceberg:<table>:<run_date>` and lands as that append.
"""
from __future__ import annotations

import io
import os
import threading
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from imgrec.connectors.buckets import bucket_address
from imgrec.connectors.output import Output
from imgrec.schemas.run import is_bucket
from imgrec.schemas.tables import TABLES, conform

NAMESPACE = "imgrec"
SHARD_PROPERTY = "imgrec.shard"
COMMIT_ATTEMPTS = 30


def _iceberg_schema(table: str) -> pa.Schema:
    return TABLES[table].append(pa.field("run_date", pa.date32(), nullable=False))


def locations(out: str, catalog: str | None) -> tuple[str, str, dict[str, str]]:
    """(catalog URI, warehouse location, file IO properties) for an output. A bucket's file IO goes to the
    endpoint a bucket source would (OBS through its S3 endpoint); credentials: the AWS chain, as boto3's."""
    if is_bucket(out):
        where = bucket_address(out)
        props = {"s3.region": where.region}
        if where.endpoint:
            props["s3.endpoint"] = where.endpoint
        if where.virtual:
            props["s3.force-virtual-addressing"] = "true"
        if not catalog:
            raise ValueError("Iceberg tables in a bucket need iceberg_catalog (a database every worker reaches)")
        location = f"{where.bucket}/{where.prefix.strip('/')}".rstrip("/")
        return catalog, f"s3://{location}/iceberg", props
    return catalog or f"sqlite:///{out}/_state/iceberg_catalog.db", f"file://{out}/iceberg", {}


class IcebergTables:
    name = "iceberg"
    FOLDER = "iceberg"  # data and metadata files, under the output
    MARK = "iceberg:"  # a COMMIT marker's destination: iceberg:<table>:<run_date>

    def __init__(self, output: Output, catalog: str | None):
        self.output = output
        self.catalog_uri, self.location, self.properties = locations(output.uri, catalog)
        self._catalog = None
        self._lock = threading.Lock()

    @property
    def catalog(self):
        with self._lock:
            if self._catalog is None:
                self._catalog = _retrying(lambda: self._open_catalog())
            return self._catalog

    def _open_catalog(self):
        if self.catalog_uri.startswith(("http://", "https://")):
            from pyiceberg.catalog.rest import RestCatalog

            return RestCatalog("imgrec", uri=self.catalog_uri, warehouse=self.location, **self.properties)
        from pyiceberg.catalog.sql import SqlCatalog

        if self.catalog_uri.startswith("sqlite:///"):
            os.makedirs(os.path.dirname(self.catalog_uri[len("sqlite:///"):]) or ".", exist_ok=True)
        catalog = SqlCatalog("imgrec", uri=self.catalog_uri, warehouse=self.location, **self.properties)
        catalog.create_namespace_if_not_exists(NAMESPACE)
        return catalog

    def table(self, name: str):
        """The Iceberg table, created (partitioned by run_date) the first time."""
        from pyiceberg.catalog import Catalog
        from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError
        from pyiceberg.partitioning import PartitionField, PartitionSpec
        from pyiceberg.transforms import IdentityTransform

        identifier = f"{NAMESPACE}.{name}"
        try:
            return self.catalog.load_table(identifier)
        except NoSuchTableError:
            pass
        schema = Catalog._convert_schema_if_needed(_iceberg_schema(name))
        spec = PartitionSpec(PartitionField(source_id=schema.find_field("run_date").field_id, field_id=1000,
                                            transform=IdentityTransform(), name="run_date"))
        try:
            # pyiceberg's own commit retry would re-apply an append without our check for the shard's id
            # (two workers finishing one shard would both land): conflicts come back to `append` instead.
            return self.catalog.create_table(identifier, schema=schema, partition_spec=spec,
                                             properties={"commit.retry.num-retries": "0"})
        except TableAlreadyExistsError:  # another worker created it first
            return self.catalog.load_table(identifier)

    def prepare(self) -> None:
        for name in TABLES:
            _retrying(lambda name=name: self.table(name))

    def ensure(self, run_date: str, run_id: str) -> None:
        self.prepare()

    def destination(self, table: str, run_date: str, shard: str) -> str:
        return f"{self.MARK}{table}:{run_date}"

    def owns(self, destination: str) -> bool:
        return destination.startswith(self.MARK)

    def land(self, staged: str, destination: str, shard: str) -> bool:
        if not self.output.exists(staged):  # gone: appended and removed by an earlier, interrupted attempt
            return False
        table, _, run_date = destination[len(self.MARK):].partition(":")
        self.append(table, run_date, shard, self.output.get(staged))
        self.output.delete([staged])
        return True

    def append(self, table: str, run_date: str, shard: str, data: bytes) -> None:
        """Append one staged shard file, unless this shard's append is already in the table's history."""
        rows = pq.read_table(io.BytesIO(data))
        rows = rows.append_column(pa.field("run_date", pa.date32(), nullable=False),
                                  pa.array([date.fromisoformat(run_date)] * rows.num_rows, pa.date32()))
        rows = rows.cast(_iceberg_schema(table))

        def attempt() -> None:
            current = self.table(table)
            if any(s.summary is not None and s.summary.get(SHARD_PROPERTY) == shard for s in current.snapshots()):
                return
            current.append(rows, snapshot_properties={SHARD_PROPERTY: shard})

        _retrying(attempt)

    def scan(self, table: str, columns: list[str] | None = None, run_id: str | None = None,
             run_date: str | date | None = None, api: str | None = None, key_prefix: str | None = None) -> pa.Table:
        """Rows of one table as arrow, the filters pushed into the scan (partitions and files pruned)."""
        from pyiceberg.expressions import AlwaysTrue, And, EqualTo, StartsWith

        where: Any = AlwaysTrue()
        for column, value in (("run_id", run_id), ("api", api)):
            if value is not None:
                where = And(where, EqualTo(column, value))
        if run_date is not None:
            where = And(where, EqualTo("run_date", str(run_date)))
        if key_prefix is not None:
            where = And(where, StartsWith("key", key_prefix))
        fields = tuple(columns) if columns else ("*",)
        return conform(table, self.table(table).scan(row_filter=where, selected_fields=fields).to_arrow(), columns)

    def run_view(self, con, view: str, table: str, run_id: str, run_date: str, work: Path) -> bool:
        rows = self.scan(table, run_id=run_id, run_date=run_date)
        if rows.num_rows == 0:
            return False
        con.register(view, rows)
        return True

    def catalog_view(self, con, table: str) -> bool:
        """A copy of the table's current snapshot: DuckDB's iceberg extension is a download."""
        con.register("_rows", self.scan(table))
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM _rows")
        con.unregister("_rows")
        return True

    def damaged(self) -> list[str]:
        return []  # the catalog tracks every data file; a torn one fails its scan with pyiceberg's error


def _retrying(action):
    """Retry a catalog operation that lost a race: a commit conflict, SQLite busy with another writer."""
    from pyiceberg.exceptions import CommitFailedException
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

    def conflict(exc: BaseException) -> bool:
        if isinstance(exc, CommitFailedException):
            return True
        text = str(exc).lower()
        return type(exc).__name__ in ("OperationalError", "IntegrityError") and (
            "locked" in text or "busy" in text or "unique" in text or "duplicate" in text)

    for attempt in Retrying(retry=retry_if_exception(conflict), stop=stop_after_attempt(COMMIT_ATTEMPTS),
                            wait=wait_random_exponential(multiplier=0.05, max=2.0), reraise=True):
        with attempt:
            return action()
