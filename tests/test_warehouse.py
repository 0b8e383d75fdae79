"""Tables where BI tools read them: the DuckDB catalog file, `imgrec sql`, and `imgrec.warehouse.open`."""
from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

import imgrec.warehouse
from imgrec.flows.catalog import catalog_tagging
from imgrec.schemas.run import RunParameters
from tests.helpers import encode, photo

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def warehouse(prefect_api, tmp_path_factory) -> Path:
    import asyncio

    root = tmp_path_factory.mktemp("bi")
    (root / "catalog" / "photos").mkdir(parents=True)
    (root / "catalog" / "chelsea.png").write_bytes(encode(photo("chelsea"), "PNG"))  # as the quickstart has it
    for name in ("coffee", "astronaut"):
        (root / "catalog" / "photos" / f"{name}.jpg").write_bytes(encode(photo(name)))
    (root / "catalog" / "photos" / "broken.png").write_bytes(b"not an image")
    out = root / "warehouse"
    asyncio.run(catalog_tagging(RunParameters(source=str(root / "catalog"), out=str(out),
                                              apis=["image_tagging", "recapture_detect"],
                                              params={"image_tagging": {"threshold": 30}})))
    return out


def test_the_catalog_file_has_a_view_per_table(warehouse):
    con = duckdb.connect(str(warehouse / "imgrec.duckdb"), read_only=True)
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert {"images", "tags", "detections", "faces", "recapture", "errors", "runs"} <= views
    assert con.execute("SELECT count(*) FROM images").fetchone()[0] == 4
    assert con.execute("SELECT count(*) FROM faces").fetchone()[0] == 0  # the empty table answers too


def test_readme_queries_give_the_same_numbers_through_the_views(warehouse):
    block = re.search(r"### Example queries.*?```sql\n(.*?)```", README.read_text(), re.S).group(1)
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    queries = [q.strip() for q in block.replace("2026-11-28", today).split(";") if q.strip()]
    catalog = duckdb.connect(str(warehouse / "imgrec.duckdb"), read_only=True)  # what a BI tool opens
    for query in queries:
        direct = duckdb.connect().execute(query.replace("'warehouse/", f"'{warehouse}/")).fetchall()
        through_views = re.sub(r"read_parquet\('warehouse/(\w+)/\*\*/\*\.parquet', hive_partitioning = true\)",
                               r"\1", query)
        assert "read_parquet" not in through_views
        assert sorted(catalog.execute(through_views).fetchall(), key=repr) == sorted(direct, key=repr), query


def test_imgrec_sql_prints_a_query(warehouse):
    imgrec = str(Path(sys.executable).parent / "imgrec")
    out = subprocess.run([imgrec, "sql", "SELECT suggestion, count(*) AS n FROM recapture GROUP BY 1",
                          "--out", str(warehouse), "--csv"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "suggestion,n" and "true,3" in out.stdout
    bad = subprocess.run([imgrec, "sql", "SELECT * FROM nope", "--out", str(warehouse)], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_the_python_api_filters_where_it_reads(warehouse):
    wh = imgrec.warehouse.open(warehouse)
    tags = wh.table("tags", api="image_tagging", key_prefix="ch", columns=["key", "tag_en", "confidence"])
    assert set(tags["key"]) == {"chelsea.png"} and "cat" in set(tags["tag_en"])
    today = datetime.now(timezone.utc).date()
    assert len(wh.table("images", run_date=today)) == 4 and len(wh.table("images", run_date="1999-01-01")) == 0
    errors = wh.arrow("errors")
    assert errors.num_rows == 2 and set(errors.column("error_code").to_pylist()) == {"AIS.0021"}
    with pytest.raises(KeyError, match="no column"):
        wh.table("tags", columns=["nope"])
    with pytest.raises(KeyError, match="unknown table"):
        wh.table("nope")
