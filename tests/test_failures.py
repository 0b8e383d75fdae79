"""A failed night must not look green: loud failures, correct prefixes, start-up checks, README queries."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np

from tests.helpers import AK, PROJECT, encode, free_port, photo, read_table, upload, write_config

IMGREC = str(Path(sys.executable).parent / "imgrec")
README = Path(__file__).resolve().parents[1] / "README.md"


def _catalog(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    base = photo("coffee")[::8, ::8]
    for i in range(n):
        (folder / f"img-{i:03d}.jpg").write_bytes(encode(np.roll(base, i, axis=1).copy()))


def _run(args: list[str], prefect_api: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([IMGREC, "run", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PREFECT_API_URL": prefect_api, **env})


def test_a_wrong_secret_key_fails_the_run_after_a_few_calls(prefect_api, service, tmp_path):
    _catalog(tmp_path / "src", 60)
    out = tmp_path / "out"
    proc = _run([str(tmp_path / "src"), "--out", str(out), "--backend", "http", "--endpoint", service.base_url,
                 "--apis", "celebrity_recognition", "--concurrency", "4"], prefect_api,
                HUAWEICLOUD_SDK_AK=AK, HUAWEICLOUD_SDK_SK="not-the-secret-key", HUAWEICLOUD_SDK_PROJECT_ID=PROJECT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "60 of 60 images failed; most often APIG.0301" in proc.stderr
    images = read_table(out, "images")
    assert len(images) == 60 and {r["status"] for r in images} == {"failed"}  # every image recorded
    errors = read_table(out, "errors")
    assert len(errors) == 60 and {e["error_code"] for e in errors} == {"APIG.0301"}
    (run,) = read_table(out, "runs")
    assert run["calls"] <= 5 + 4  # the breaker's 5 in a row, plus what was already in flight
    assert sum(1 for e in errors if e["error_msg"].startswith("not sent")) >= 60 - 9
    assert "not-the-secret-key" not in proc.stdout + proc.stderr


def test_an_endpoint_refusing_connections_fails_the_run_early(prefect_api, tmp_path):
    _catalog(tmp_path / "src", 40)
    out = tmp_path / "out"
    proc = _run([str(tmp_path / "src"), "--out", str(out), "--backend", "http", "--endpoint",
                 f"http://127.0.0.1:{free_port()}", "--apis", "celebrity_recognition", "--concurrency", "2"],
                prefect_api, HUAWEICLOUD_SDK_AK=AK, HUAWEICLOUD_SDK_SK="sk", HUAWEICLOUD_SDK_PROJECT_ID=PROJECT,
                IMGREC_CLIENT__RETRY_ATTEMPTS="2")
    assert proc.returncode == 1 and "most often NET.CONNECTION" in proc.stderr, proc.stderr
    (run,) = read_table(out, "runs")
    assert run["calls"] <= (5 + 2) * 2  # calls in a row before the breaker opens, each tried twice
    assert run["images_failed"] == 40


def test_one_bad_image_among_good_ones_exits_0(prefect_api, tmp_path):
    _catalog(tmp_path / "src", 3)
    (tmp_path / "src" / "broken.jpg").write_bytes(encode(photo("chelsea"))[:2000])
    proc = _run([str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--apis", "image_tagging"], prefect_api)
    assert proc.returncode == 0, proc.stderr
    assert {r["status"] for r in read_table(tmp_path / "out", "images")} == {"ok", "invalid"}


def test_a_run_that_lists_nothing_says_so(prefect_api, tmp_path):
    _catalog(tmp_path / "src", 2)
    proc = _run([str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--prefix", "nothing/here/"], prefect_api)
    assert proc.returncode == 0 and "warning: no images listed" in proc.stderr


def test_mistakes_fail_fast_with_the_valid_choices(tmp_path):
    for args, expected in [(["--apis", "tagging"], "catalog APIs: image_tagging, media_tagging"),
                           (["--mode", "urls"], "'inline' or 'url'"),
                           (["--backend", "cloud"], "'local' or 'http'"),
                           (["--param", "image_tagging.treshold=30"], "its parameters: language, threshold"),
                           (["--mode", "url"], "s3:// or obs:// source")]:
        started = time.perf_counter()
        proc = subprocess.run([IMGREC, "run", str(tmp_path), *args], capture_output=True, text=True, timeout=60)
        elapsed = time.perf_counter() - started
        assert proc.returncode == 2 and expected in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert elapsed < 2.0, (args, elapsed)  # before Prefect starts (~0.3 s measured)


def test_prefix_joins_the_sources_own_prefix_as_a_folder(s3_server, tmp_path):
    from imgrec.connectors.source import FolderSource, BucketSource

    keys = ["shop/2026/10/a.jpg", "shop/2026/11/b.jpg", "shop2026/10/c.jpg", "shopping/2026/10/d.jpg"]
    upload("prefixes", {key: b"x" for key in keys})
    for source in ("s3://prefixes/shop", "s3://prefixes/shop/"):
        for prefix in ("2026/10/", "/2026/10/", "2026/10"):
            assert [o.key for o in BucketSource(source).list(prefix)] == ["shop/2026/10/a.jpg"], (source, prefix)
        assert [o.key for o in BucketSource(source).list()] == ["shop/2026/10/a.jpg", "shop/2026/11/b.jpg"]
    for key in keys:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(b"x")
    folder = FolderSource(tmp_path / "shop")
    for prefix in ("2026/10/", "/2026/10/", "2026/10"):
        assert [o.key for o in folder.list(prefix)] == ["2026/10/a.jpg"]


def test_serve_refuses_to_start_with_a_missing_gallery(tmp_path):
    config = write_config(tmp_path, tmp_path / "no-such-gallery")
    proc = subprocess.run([IMGREC, "serve", "--port", str(free_port()), "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"celebrity_recognition: [celebrity] gallery {tmp_path / 'no-such-gallery'} is not a folder" in proc.stderr


def test_ready_tells_the_truth_and_a_broken_engine_answers_ais_0007(tmp_path, gallery):
    import shutil

    from starlette.testclient import TestClient

    from imgrec.service.app import create_app
    from imgrec.settings import Settings

    moved = shutil.copytree(gallery, tmp_path / "gallery")
    app = create_app(Settings(auth={"enabled": False}, celebrity={"gallery": moved}))
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 200
        shutil.rmtree(moved)  # the gallery disappears under a running service
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "degraded"
        assert "is not a folder" in ready.json()["engines"]["celebrity_recognition"]["problem"]
        assert ready.json()["engines"]["image_tagging"] == {"enabled": True, "problem": None}
        import base64

        body = {"image": base64.b64encode(encode(photo("astronaut"))).decode()}
        for _ in range(2):  # the engine cannot start: the reference's "not enabled", every time, no 500
            answer = client.post(f"/v2/{PROJECT}/image/celebrity-recognition", json=body)
            assert (answer.status_code, answer.json()["error_code"]) == (400, "AIS.0007")


def test_logs_redact_presigned_urls_signatures_and_tokens():
    import logging

    from imgrec.logs import install

    install()
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    logger = logging.getLogger("imgrec.test.redaction")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    logger.info("GET %s", "http://127.0.0.1:9000/b/k.jpg?X-Amz-Credential=AKID%2F20261128&X-Amz-Signature=f00d")
    logger.info("Authorization: SDK-HMAC-SHA256 Access=AKID, SignedHeaders=host, Signature=c0ffee")
    logger.info("login with password=hunter2 gave IMGREC.eyJ1IjoiYWxpY2UiLCJwIjoiMDEyMyJ9.c2lnbmF0dXJl")
    text = "\n".join(records)
    for secret in ("f00d", "AKID%2F", "c0ffee", "hunter2", "eyJ1IjoiYWxpY2Ui"):
        assert secret not in text, text
    assert "http://127.0.0.1:9000/b/k.jpg?<redacted>" in text


def test_readme_example_queries_answer_on_a_fresh_run_without_faces(prefect_api, tmp_path):
    (tmp_path / "warehouse").mkdir()
    src = tmp_path / "catalog" / "photos"
    src.mkdir(parents=True)
    (tmp_path / "catalog" / "chelsea.png").write_bytes(encode(photo("chelsea"), "PNG"))  # the quickstart's
    (src / "broken.png").write_bytes(b"not an image")
    proc = _run([str(tmp_path / "catalog"), "--out", str(tmp_path / "warehouse"),
                 "--apis", "image_tagging,recapture_detect", "--param", "image_tagging.threshold=30"], prefect_api)
    assert proc.returncode == 0, proc.stderr
    block = re.search(r"### Example queries.*?```sql\n(.*?)```", README.read_text(), re.S).group(1)
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    queries = [q.strip() for q in block.replace("2026-11-28", today).split(";") if q.strip()]
    assert len(queries) == 7
    con = duckdb.connect()
    os.chdir(tmp_path)
    try:
        answers = [con.execute(q).fetchall() for q in queries]
    finally:
        os.chdir(Path(__file__).resolve().parents[1])
    history, failures, tags, codes, faces, groups, verdicts = answers
    assert groups == []  # no near-duplicates among these two (tests/test_similar.py runs it on some)
    assert history == [(history[0][0], "ok", None, None, None)]
    assert failures == [("photos/broken.png", api, "AIS.0021", "The requested file type is not supported.", 0)
                        for api in ("image_tagging", "recapture_detect")]
    assert "cat" in {tag for _, tag, _ in tags}
    assert sorted(codes) == [("image_tagging", "AIS.0021", 1), ("recapture_detect", "AIS.0021", 1)]
    assert faces == [] and len(verdicts) == 1
