"""One schema everywhere: the same run into a folder and a bucket, as Parquet files and as Iceberg tables,
reads back with the same column types, and the README's example queries give the same answers on all four."""
from __future__ import annotations

import asyncio
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

import imgrec.warehouse
from imgrec.flows.catalog import catalog_tagging
from imgrec.schemas.run import RunParameters
from imgrec.schemas.tables import TABLES
from tests.helpers import encode, photo

README = Path(__file__).resolve().parents[1] / "README.md"
RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{8}")  # each output had a run of its own


@pytest.fixture(scope="module")
def outputs(prefect_api, s3_server, tmp_path_factory) -> dict[str, tuple[str, str | None]]:
    import boto3

    root = tmp_path_factory.mktemp("four")
    (root / "catalog" / "photos").mkdir(parents=True)
    (root / "catalog" / "chelsea.png").write_bytes(encode(photo("chelsea"), "PNG"))  # as the quickstart has it
    for name in ("coffee", "astronaut"):
        (root / "catalog" / "photos" / f"{name}.jpg").write_bytes(encode(photo(name)[::2, ::2]))
    (root / "catalog" / "photos" / "broken.png").write_bytes(b"not an image")
    boto3.client("s3", endpoint_url=s3_server["url"]).create_bucket(Bucket="four")
    wanted = {"folder/parquet": (str(root / "wh-parquet"), "parquet", None),
              "folder/iceberg": (str(root / "wh-iceberg"), "iceberg", None),
              "bucket/parquet": ("s3://four/parquet", "parquet", None),
              "bucket/iceberg": ("s3://four/iceberg", "iceberg", f"sqlite:///{root}/catalog.db")}
    for out, table_format, catalog in wanted.values():
        asyncio.run(catalog_tagging(RunParameters(
            source=str(root / "catalog"), out=out, table_format=table_format, iceberg_catalog=catalog,
            apis=["image_tagging", "recapture_detect"], params={"image_tagging": {"threshold": 30}})))
    return {name: (out, catalog) for name, (out, _, catalog) in wanted.items()}


def test_every_table_reads_back_with_the_same_types_everywhere(outputs):
    schemas = {}
    for name, (out, catalog) in outputs.items():
        wh = imgrec.warehouse.open(out, iceberg_catalog=catalog)
        schemas[name] = {t: [(f.name, str(f.type)) for f in wh.arrow(t).schema] for t in TABLES}
    reference = schemas.pop("folder/parquet")
    assert [n for n, _ in reference["tags"]][-1] == "run_date"
    for name, tables in schemas.items():
        for table, fields in tables.items():
            assert fields == reference[table], (name, table)


def test_readme_queries_answer_the_same_on_every_output(outputs):
    block = re.search(r"### Example queries.*?```sql\n(.*?)```", README.read_text(), re.S).group(1)
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    queries = [re.sub(r"read_parquet\('warehouse/(\w+)/\*\*/\*\.parquet', hive_partitioning = true\)", r"\1",
                      q.strip()) for q in block.replace("2026-11-28", today).split(";") if q.strip()]
    answers = {}
    for name, (out, catalog) in outputs.items():
        wh = imgrec.warehouse.open(out, iceberg_catalog=catalog)
        answers[name] = [sorted(RUN_ID.sub("<run>", repr(row)) for row in wh.sql(q).itertuples(index=False))
                         for q in queries]
    reference = answers.pop("folder/parquet")
    assert any(reference)  # the queries found rows
    for name, got in answers.items():
        for query, mine, theirs in zip(queries, got, reference):
            assert mine == theirs, (name, query)
