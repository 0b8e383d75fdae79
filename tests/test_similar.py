"""Near-duplicates across a catalog: fingerprints in `embeddings`, pairs in `near_duplicates`, the index under
`_index/` kept in step with the table through re-runs and a kill -9, `imgrec similar`."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq

from imgrec.connectors.output import FolderOutput
from imgrec.flows.catalog import catalog_tagging
from imgrec.schemas import similar
from imgrec.schemas.run import RunParameters
from imgrec.tasks.similar import CatalogIndex, groups
from tests.helpers import encode, photo, read_table

ROOT = Path(__file__).resolve().parents[1]
IMGREC = str(Path(sys.executable).parent / "imgrec")


def _half(name: str) -> bytes:
    import cv2

    rgb = photo(name)
    return encode(cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA),
                  quality=60)


def _pairs(out: Path) -> dict[tuple[str, str], tuple[float, str]]:
    rows = read_table(out, "near_duplicates")
    found = {(r["key_a"], r["key_b"]): (r["similarity"], r["kind"]) for r in rows}
    assert len(found) == len(rows), "a pair recorded twice"
    return found


def _index_keys(out: Path) -> set[str]:
    current = json.loads((out / "_index" / "CURRENT.json").read_text())
    keys = pq.read_table(out / "_index" / f"g{current['generation']:06d}-keys.parquet").to_pylist()
    return {k["key"] for k in keys if k["alive"]}


async def test_copies_arriving_later_pair_with_the_catalog_and_a_rerun_adds_nothing(prefect_api, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "chelsea.png").write_bytes(encode(photo("chelsea"), "PNG"))
    (src / "coffee.jpg").write_bytes(encode(photo("coffee")))
    (src / "astronaut.jpg").write_bytes(encode(photo("astronaut")))
    run = dict(source=str(src), out=str(out), apis=["image_tagging"])
    first = await catalog_tagging(RunParameters(**run))
    assert first["near_duplicates"]["fingerprinted"] == 3 and _pairs(out) == {}

    # the second night: a half-size recompressed copy of one, a byte copy of another, under new keys
    (src / "shop").mkdir()
    (src / "shop" / "chelsea-small.jpg").write_bytes(_half("chelsea"))
    (src / "shop" / "coffee-again.jpg").write_bytes((src / "coffee.jpg").read_bytes())
    second = await catalog_tagging(RunParameters(**run))
    assert second["near_duplicates"]["fingerprinted"] == 2
    pairs = _pairs(out)
    assert set(pairs) == {("chelsea.png", "shop/chelsea-small.jpg"), ("coffee.jpg", "shop/coffee-again.jpg")}
    assert pairs[("coffee.jpg", "shop/coffee-again.jpg")] == (1.0, "exact")
    near, kind = pairs[("chelsea.png", "shop/chelsea-small.jpg")]
    assert kind == "near" and similar.THRESHOLD <= near < 1.0
    embeddings = read_table(out, "embeddings")
    assert sorted(e["key"] for e in embeddings) == sorted(
        ["chelsea.png", "coffee.jpg", "astronaut.jpg", "shop/chelsea-small.jpg", "shop/coffee-again.jpg"])
    for row in embeddings:
        vector = np.asarray(row["vector"], np.float32)
        assert vector.shape == (similar.DIMENSIONS,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-4
        assert row["model"] == similar.MODEL and row["model_version"] == similar.VERSION and row["digest"]
    assert _index_keys(out) == {e["key"] for e in embeddings}
    report = (out / "reports" / f"{second['run_id']}.md").read_text()
    assert "2 new pairs (1 exact copies)" in report and "## Near-duplicate groups" in report

    third = await catalog_tagging(RunParameters(**run))  # nothing new: no vector computed, no pair added
    assert third["near_duplicates"]["fingerprinted"] == 0 and third["status"]["skipped"] == 5
    assert len(read_table(out, "embeddings")) == 5 and _pairs(out) == pairs

    env = {**os.environ, "DO_NOT_TRACK": "1"}
    listed = subprocess.run([IMGREC, "similar", "shop/chelsea-small.jpg", "--out", str(out), "--top", "2"],
                            capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and lines[0].endswith("  chelsea.png") and "shop/chelsea-small.jpg" not in listed.stdout
    as_csv = subprocess.run([IMGREC, "similar", str(src / "coffee.jpg"), "--out", str(out), "--csv", "--top", "3"],
                            capture_output=True, text=True, env=env)
    rows = as_csv.stdout.splitlines()
    assert rows[0] == "key,similarity" and {r.split(",")[0] for r in rows[1:3]} == {"coffee.jpg", "shop/coffee-again.jpg"}
    unknown = subprocess.run([IMGREC, "similar", "nowhere.jpg", "--out", str(out)], capture_output=True, text=True,
                             env=env)
    assert unknown.returncode == 2 and "not a fingerprinted key" in unknown.stderr

    block = re.search(r"### Example queries.*?```sql\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    query = next(q for q in block.split(";") if "near_duplicates" in q)
    os.chdir(tmp_path)
    try:
        answer = duckdb.connect().execute(query.replace("warehouse/", "out/")).fetchall()
    finally:
        os.chdir(ROOT)
    assert {key: copies for key, _, copies in answer} == {
        "chelsea.png": 1, "shop/chelsea-small.jpg": 1, "coffee.jpg": 1, "shop/coffee-again.jpg": 1}

    # the README's index per partition, searched as one: the first key finds itself, then the others
    snippet = re.search(r"\*\*Beyond one machine\*\*.*?```python\n(.*?)```", (ROOT / "README.md").read_text(),
                        re.S).group(1)
    merged = subprocess.run([sys.executable, "-c", snippet.replace("warehouse/", "out/")], cwd=tmp_path,
                            capture_output=True, text=True)
    assert merged.returncode == 0, merged.stderr
    hits = eval(merged.stdout)  # noqa: S307 - the snippet prints a list of (key, similarity)
    assert len(hits) == 5 and hits[0][1] > 0.99 and {k for k, _ in hits} == {e["key"] for e in embeddings}


def test_killed_while_the_index_is_written_then_the_rerun_agrees(prefect_api, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "coffee.jpg").write_bytes(encode(photo("coffee")))
    (src / "coffee-copy.jpg").write_bytes((src / "coffee.jpg").read_bytes())
    (src / "chelsea.jpg").write_bytes(encode(photo("chelsea")))
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "DO_NOT_TRACK": "1"}
    args = [IMGREC, "run", str(src), "--out", str(out), "--apis", "recapture_detect"]
    killed = subprocess.run(args, capture_output=True, text=True, env={**env, "IMGREC_FAILPOINT": "index"})
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]
    assert _pairs(out) == {("coffee-copy.jpg", "coffee.jpg"): (1.0, "exact")}  # the pairs landed; the index not
    assert not (out / "_index" / "CURRENT.json").exists()

    rerun = subprocess.run(args, capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _pairs(out) == {("coffee-copy.jpg", "coffee.jpg"): (1.0, "exact")}  # found again, not written twice
    assert _index_keys(out) == {e["key"] for e in read_table(out, "embeddings")} == {p.name for p in src.iterdir()}
    assert sorted(p.name for p in (out / "_index").iterdir()) == [
        "CURRENT.json", "g000001-keys.parquet", "g000001.usearch"]  # the killed run's replaced


async def test_an_older_fingerprint_version_is_left_out_and_the_catalog_fingerprinted_again(prefect_api, tmp_path,
                                                                                           monkeypatch):
    import pyarrow as pa

    import imgrec.tasks.similar as similar_task

    monkeypatch.setattr(similar_task, "_BLOCK", 1)  # one image a block: the second block finds the first's twin

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "coffee.jpg").write_bytes(encode(photo("coffee")))
    (src / "coffee-copy.jpg").write_bytes((src / "coffee.jpg").read_bytes())
    # an earlier version's rows: 399-number vectors, under another key, from a run the index never held
    old = pa.table({"run_id": ["20261101T000000-old"], "source": [str(src)], "key": ["gone.jpg"], "etag": [None],
                    "digest": ["x"], "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(399, np.float32)), 399),
                    "phash": [0], "model": ["efficientnet-lite0-embedding+dct-structure"], "model_version": ["1"],
                    "preprocessing": [""]})
    (out / "embeddings" / "run_date=2026-11-01").mkdir(parents=True)
    pq.write_table(old, out / "embeddings" / "run_date=2026-11-01" / "20261101T000000-old-0.parquet")
    summary = await catalog_tagging(RunParameters(source=str(src), out=str(out), apis=["recapture_detect"]))
    assert summary["near_duplicates"]["fingerprinted"] == 2
    assert _pairs(out) == {("coffee-copy.jpg", "coffee.jpg"): (1.0, "exact")}
    assert _index_keys(out) == {"coffee.jpg", "coffee-copy.jpg"}


def test_no_similar_makes_no_fingerprints(prefect_api, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "coffee.jpg").write_bytes(encode(photo("coffee")))
    proc = subprocess.run([IMGREC, "run", str(src), "--out", str(out), "--apis", "recapture_detect", "--no-similar",
                           "--dry-run"], capture_output=True, text=True,
                          env={**os.environ, "PREFECT_API_URL": prefect_api, "DO_NOT_TRACK": "1"})
    assert proc.returncode == 0 and "fingerprints" not in proc.stdout, proc.stdout + proc.stderr
    proc = subprocess.run([IMGREC, "run", str(src), "--out", str(out), "--apis", "recapture_detect", "--no-similar"],
                          capture_output=True, text=True,
                          env={**os.environ, "PREFECT_API_URL": prefect_api, "DO_NOT_TRACK": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert read_table(out, "embeddings") == [] and not (out / "_index").exists()


def test_the_index_replaces_a_changed_image_and_survives_a_save(tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((4, similar.DIMENSIONS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = CatalogIndex()
    index.add(["a", "b", "c"], ["d1", "d2", "d3"], vectors[:3])
    index.add(["b"], ["d4"], vectors[3:])  # b changed: its old fingerprint goes
    assert len(index) == 3 and index.nearest(vectors[3], 1) == [("b", 1.0)]
    assert all(key != "b" or sim < 0.5 for key, sim in index.nearest(vectors[1], 3))
    output = FolderOutput(tmp_path / "out")
    index.runs.add("r1")
    index.save(output, tmp_path)
    loaded = CatalogIndex.load(output, tmp_path / "copy")
    assert (len(loaded), loaded.runs, loaded.generation) == (3, {"r1"}, 1)
    assert loaded.label_of("b") == 3 and loaded.digests[3] == "d4" and loaded.label_of("a") == 0
    assert np.dot(loaded.vector("c"), vectors[2]) > 0.99
    assert groups([("a", "b"), ("c", "d"), ("b", "e")]) == [["a", "b", "e"], ["c", "d"]]


def test_a_mirror_and_a_pad_move_the_structure_little():
    from imgrec.engines.fingerprint import structure

    rgb = photo("chelsea")
    padded = np.full((rgb.shape[1], rgb.shape[1], 3), 255, np.uint8)
    top = (rgb.shape[1] - rgb.shape[0]) // 2
    padded[top:top + rgb.shape[0]] = rgb
    base = structure(rgb)
    assert float(np.dot(base, structure(rgb[:, ::-1]))) > 0.99
    assert float(np.dot(base, structure(padded))) > 0.95
    assert float(np.dot(base, structure(photo("coffee")))) < 0.8


def test_a_crop_pairs_with_its_original_and_with_no_other_photo():
    from imgrec.engines import fingerprint
    from imgrec.schemas.common import ANY_IMAGE, inspect_image

    def vector(rgb: np.ndarray) -> np.ndarray:
        data = encode(np.ascontiguousarray(rgb), "PNG")
        return fingerprint.of_bytes(data, inspect_image(data, ANY_IMAGE)).vector

    names = ["astronaut", "chelsea", "coffee", "camera", "rocket"]
    originals = {name: vector(photo(name)) for name in names}
    for name in names:
        rgb = photo(name)
        h, w = rgb.shape[:2]
        cropped = vector(rgb[h // 10:h * 9 // 10, w // 10:w * 9 // 10])  # 10% off each side: 64% of the photo
        assert similar.similarity(cropped, originals[name]) >= similar.THRESHOLD, name
        assert all(similar.similarity(cropped, v) < similar.THRESHOLD for other, v in originals.items()
                   if other != name), name
