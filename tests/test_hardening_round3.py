"""Hardening, third round (issue 28): one test per finding, each failing on the code before it."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from imgrec.schemas.errors import ApiError
from imgrec.service.auth import Authenticator, FailureWindow
from imgrec.settings import Settings
from tests.helpers import DOMAIN, PASSWORD, PROJECT, PROJECT_NAME, USER, encode, photo, read_table

IMGREC = str(Path(sys.executable).parent / "imgrec")
SECRET = "s" * 32
OTHER_PROJECT = "f" * 32


def _user(**changes) -> dict:
    return {"domain": DOMAIN, "name": USER, "password": PASSWORD, "project_id": PROJECT,
            "project_name": PROJECT_NAME, **changes}


def _token_body(password: str = PASSWORD, user: str = USER) -> dict:
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "password": password, "domain": {"name": DOMAIN}}}}, "scope": {"project": {"id": PROJECT}}}}


def _verify(auth: Authenticator, token: str, project: str = PROJECT):
    identity = auth.authenticate("POST", f"/v2/{project}/image/tagging", [], {"x-auth-token": token}, b"{}")
    auth.authorize_project(identity, project)
    return identity


# 1 ---------------------------------------------------------------------------------------------------------
def test_a_token_dies_with_its_users_password_and_project():
    issued = Authenticator(Settings(users=[_user()], auth={"token_secret": SECRET}))
    token, _ = issued.issue_token(_token_body(), "10.0.0.1")
    assert _verify(Authenticator(Settings(users=[_user()], auth={"token_secret": SECRET})), token).project_id == PROJECT
    for changed in (_user(password="a new password"), _user(project_id=OTHER_PROJECT)):
        later = Authenticator(Settings(users=[changed], auth={"token_secret": SECRET}))
        for project in (PROJECT, OTHER_PROJECT):
            with pytest.raises(ApiError) as refused:
                _verify(later, token, project)
            assert refused.value.code == "APIG.0301" and refused.value.status == 401


# 2 ---------------------------------------------------------------------------------------------------------
def test_strangers_cannot_lock_a_user_out_nor_empty_the_window():
    auth = Authenticator(Settings(users=[_user()]))

    def attempt(client: str, password: str, user: str = USER) -> int:
        try:
            auth.issue_token(_token_body(password, user), client)
            return 201
        except ApiError as err:
            return err.status

    assert [attempt("10.0.0.66", "guess") for _ in range(12)] == [401] * 10 + [429] * 2
    assert attempt("10.0.0.7", PASSWORD) == 201  # alice from her own address: not locked out by the stranger
    # 9,600 failed logins for made-up users from 960 addresses: the stranger's counters stay (never evicted
    # while active), and past the service-wide budget an address that failed is not heard again this minute
    for n in range(9600):
        attempt(f"10.1.{n // 10 // 250}.{n // 10 % 250}", "x", user=f"made-up-{n}")
    assert attempt("10.0.0.66", PASSWORD) == 429
    assert attempt("10.1.0.0", PASSWORD) == 429
    assert attempt("10.0.0.8", PASSWORD) == 201  # a user whose address has not failed still signs in


def test_a_failure_window_never_evicts_an_active_key():
    window = FailureWindow(limit=2, window=60, keys=3)
    for key in ("a", "a", "b", "c"):
        assert window.add(key)
    assert window.add("d") is False and window.full  # untracked: the caller refuses (fails closed)
    assert window.throttled("a")


# 3 ---------------------------------------------------------------------------------------------------------
class _DripServer:
    """An HTTP server on loopback that answers one byte a second: a slow URL."""

    def __init__(self):
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn):
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n")
            while not self.stop.wait(1.0):
                conn.sendall(b"\xff")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


def test_one_project_cannot_take_every_slot(tmp_path):
    import httpx

    from tests.helpers import ServiceProcess, write_config

    drip = _DripServer()
    extra = (f'\n[auth]\nenabled = false\n[url_fetch]\nallow = ["127.0.0.1:{drip.port}"]\ntimeout_seconds = 6\n'
             "[service]\nmax_active_requests = 8\nmax_active_per_project = 4\nmax_url_fetches_per_project = 3\n")
    service = ServiceProcess(write_config(tmp_path, extra=extra), tmp_path / "service.log")
    image = __import__("base64").b64encode(encode(photo("coffee"))).decode()
    try:
        async def scenario():
            async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as http:
                slow = [asyncio.create_task(http.post(f"/v2/{PROJECT}/image/tagging",
                                                      json={"url": f"http://127.0.0.1:{drip.port}/p{i}.jpg"}))
                        for i in range(6)]
                await asyncio.sleep(1.5)  # the slow URLs hold their slots
                started = time.monotonic()
                other = await http.post(f"/v2/{OTHER_PROJECT}/image/tagging", json={"image": image})
                waited = time.monotonic() - started
                return [r.status_code for r in await asyncio.gather(*slow)], other, waited

        slow, other, waited = asyncio.run(scenario())
    finally:
        service.stop()
        drip.close()
    assert other.status_code == 200, other.text  # the other project is served at once...
    assert waited < 5
    assert sorted(slow).count(429) == 3  # ...while this one is refused past its share (4) and its URL fetches (3)


def test_shares_apply_where_several_projects_are_configured():
    from imgrec.service.app import Admission

    one = Admission.of(Settings(users=[_user()]))
    assert (one.per_project, one.url_per_project) == (64, 64)  # a single tenant keeps every slot
    two = Admission.of(Settings(users=[_user(), _user(name="bob", project_id=OTHER_PROJECT)]))
    assert (two.per_project, two.url_per_project) == (56, 16)
    two_users = [_user(), _user(name="bob", project_id=OTHER_PROJECT)]
    trusted = Admission.of(Settings(users=two_users, auth={"enabled": False}))
    assert (trusted.per_project, trusted.url_per_project) == (64, 64)
    with two.request(PROJECT), two.request(OTHER_PROJECT):
        assert two.active == 2
    assert two.active == 0 and not two._projects


# 4, 11 -----------------------------------------------------------------------------------------------------
def test_output_names_are_unique_per_key_and_bounded():
    from imgrec.tasks.shard_worker import output_name

    keys = ["x.jpg", "x.jpeg", "X.jpg", "x.JPG", "shop/x.jpg", "x.jpeg.jpg", "x"]
    names = [output_name("dark_enhance", key, "JPEG") for key in keys]
    assert len({n.lower() for n in names}) == len(keys)  # distinct even where case is ignored
    assert names[4].startswith("enhanced_images/dark_enhance/shop/x.jpg-") and names[4].endswith(".jpg")
    assert output_name("dark_enhance", "x.jpg", "JPEG") == names[0]  # fixed per key: a re-run replaces it
    long = output_name("dark_enhance", "é" * 120 + ".jpg", "JPEG")
    assert len(Path(long).name.encode()) < 160
    with pytest.raises(PermissionError):
        output_name("dark_enhance", "../x.jpg", "JPEG")


def test_results_of_similar_keys_and_a_long_name_each_land_once(prefect_api, tmp_path):
    import numpy as np

    source, out = tmp_path / "catalog", tmp_path / "out"
    source.mkdir()
    photos = {"x.jpg": "coffee", "x.jpeg": "chelsea", "X.jpg": "astronaut", ("n" * 236) + ".jpg": "camera"}
    for name, which in photos.items():
        image = photo(which)
        (source / name).write_bytes(encode((image // 5).astype(np.uint8) if image.ndim == 3 else image // 5))
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    done = subprocess.run([IMGREC, "run", str(source), "--out", str(out), "--apis", "dark_enhance"],
                          capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {r["key"]: r["status"] for r in read_table(out, "images")} == dict.fromkeys(photos, "ok")
    rows = read_table(out, "enhanced")
    assert len(rows) == 4 and len({r["output_uri"] for r in rows}) == 4
    for row in rows:
        assert Path(row["output_uri"].removeprefix("file://")).stat().st_size == row["output_size"]


# 5, 10 -----------------------------------------------------------------------------------------------------
HOSTILE_KEYS = ["a[/b]x.jpg", "[link=https://example.com]lnk[/link].jpg", "osc\x1b]0;pwned\x07.jpg",
                "two\nlines|cell.jpg", "[x](javascript:alert(1)).jpg", '=HYPERLINK("https://example.com","y")']


def _warehouse_with(tmp_path, keys) -> Path:
    from imgrec.tasks.formats.parquet import table_file, write_table

    out = tmp_path / "wh"
    path = table_file(out, "images", "2026-12-06", "r-s00000")
    path.parent.mkdir(parents=True)
    write_table(path, "images", [{"run_id": "r", "source": "s", "key": k, "status": "ok"} for k in keys])
    return out


def test_sql_prints_values_as_text(tmp_path):
    out = _warehouse_with(tmp_path, HOSTILE_KEYS)
    shown = subprocess.run([IMGREC, "sql", "SELECT key FROM images ORDER BY key", "--out", str(out)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "a[/b]x.jpg" in shown.stdout and "[link=https://example.com]lnk[/link].jpg" in shown.stdout
    assert "osc\\x1b]0;pwned\\x07.jpg" in shown.stdout and "two\\nlines|cell.jpg" in shown.stdout
    csv = subprocess.run([IMGREC, "sql", "SELECT key, [key, 'x'] AS pair FROM images ORDER BY key", "--out", str(out),
                          "--csv"], capture_output=True, text=True, timeout=60)
    assert csv.returncode == 0, csv.stderr
    assert "'=HYPERLINK(" in csv.stdout and "\n=HYPERLINK" not in csv.stdout  # not a formula in a spreadsheet
    assert '"[""a[/b]x.jpg"", ""x""]"' in csv.stdout  # a list column as a JSON list, on one line


def test_the_markdown_report_keeps_keys_as_text(tmp_path):
    from datetime import datetime, timezone

    from imgrec.tasks.job import Job
    from imgrec.tasks.shard_worker import ShardStats
    from imgrec.tasks.report import markdown, summarize
    from imgrec.tasks.formats.parquet import table_file, write_table

    job = Job(run_id="20261206T000000Z-md", flow="catalog-tagging", source="src", out=str(tmp_path),
              apis=["image_tagging"])
    path = table_file(tmp_path, "images", job.run_date, job.run_id + "-s00000")
    path.parent.mkdir(parents=True)
    write_table(path, "images", [{"run_id": job.run_id, "source": "src", "key": k, "status": "ok"}
                                 for k in HOSTILE_KEYS])
    md = markdown(summarize(job, 6, [ShardStats(shard=0, objects=6, status={"ok": 6})], datetime.now(timezone.utc)))
    assert "\x1b" not in md and "\x07" not in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "ok" in line]
    assert len(rows) == len(HOSTILE_KEYS)  # the newline in a key did not break its row
    assert all(line.count(" | ") == 3 for line in rows)  # nor did the pipe add a column
    import re

    assert not re.search(r"(?<!\\)\]\(", md) and "\\[x\\](javascript:" in md  # no link can be made


# 6 ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("secret", ["", "short"])
def test_a_short_token_secret_is_refused_at_start(tmp_path, secret):
    config = tmp_path / "imgrec.toml"
    config.write_text(f'[auth]\ntoken_secret = "{secret}"\n')
    started = subprocess.run([IMGREC, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert started.returncode == 2
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1 and "token_secret must be at least 32 bytes" in lines[0], started.stderr


# 7 ---------------------------------------------------------------------------------------------------------
def test_damaged_ledger_and_table_files_are_moved_aside_and_redone(prefect_api, tmp_path):
    source, out = tmp_path / "catalog", tmp_path / "out"
    source.mkdir()
    for i, which in enumerate(["coffee", "chelsea", "astronaut", "camera"]):
        (source / f"p{i}.jpg").write_bytes(encode(photo(which)))
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    run = [IMGREC, "run", str(source), "--out", str(out), "--apis", "recapture_detect", "--shard-size", "2"]
    assert subprocess.run(run, capture_output=True, timeout=240, env=env).returncode == 0
    ledgers = sorted((out / "_state" / "ledger").glob("*-s0000[01].parquet"))
    assert len(ledgers) == 2
    ledgers[0].write_bytes(b"")  # emptied by something outside imgrec
    table = next(p for p in (out / "recapture").glob("run_date=*/*.parquet") if ledgers[1].stem in p.name)
    table.write_bytes(table.read_bytes()[:40])  # truncated
    query = subprocess.run([IMGREC, "sql", "SELECT count(*) AS n FROM recapture", "--out", str(out), "--csv"],
                           capture_output=True, text=True, timeout=60)
    assert query.returncode == 0 and query.stdout.split() == ["n", "2"], query.stdout + query.stderr
    assert "skipped a damaged table file" in query.stderr and table.name in query.stderr
    again = subprocess.run(run, capture_output=True, text=True, timeout=240, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "damaged files moved aside" in again.stdout
    rows = read_table(out, "recapture")
    assert sorted(r["key"] for r in rows) == ["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]  # each once, all four redone
    assert len(list((out / "_quarantine").rglob("*.parquet"))) >= 3  # two ledgers, the torn file and its shard's
    third = subprocess.run(run, capture_output=True, text=True, timeout=240, env=env)
    assert third.returncode == 0 and "skipped 4" in third.stdout, third.stdout


# 8 ---------------------------------------------------------------------------------------------------------
def test_a_damaged_model_is_refused_before_the_run(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(Settings.load().models_dir, models)
    damaged = models / "centernet.onnx"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    env = {**os.environ, "IMGREC_MODELS_DIR": str(models)}
    listed = subprocess.run([IMGREC, "apis"], capture_output=True, text=True, timeout=60, env=env)
    assert "image_tagging" in listed.stdout and "damaged" in listed.stdout and "centernet.onnx" in listed.stdout
    (tmp_path / "src").mkdir()
    run = subprocess.run([IMGREC, "run", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--apis",
                          "image_tagging"], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "centernet.onnx is damaged" in run.stderr and "scripts/setup.sh" in run.stderr


# 9 ---------------------------------------------------------------------------------------------------------
FLOOD = """
import asyncio, sys, time
import httpx

async def main(base, seconds):
    # 2 MB of JSON that is invalid only at its end: one megabyte-long array of numbers
    body = b'{"image": [' + b"1," * 1_000_000 + b"}"
    until = time.monotonic() + seconds
    async def one(http):
        while time.monotonic() < until:
            await http.post("/v2/%s/image/tagging" % sys.argv[3], content=body,
                            headers={"Content-Type": "application/json"})
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=40)) as http:
        await asyncio.gather(*(one(http) for _ in range(30)))

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


def test_health_answers_while_large_json_bodies_are_parsed(tmp_path):
    import httpx

    from tests.helpers import ServiceProcess, write_config

    service = ServiceProcess(write_config(tmp_path, extra="\n[auth]\nenabled = false\n"), tmp_path / "service.log")
    try:  # the flood from another process, so that this one's timings are the service's alone
        flood = subprocess.Popen([sys.executable, "-c", FLOOD, service.base_url, "6", PROJECT])
        time.sleep(2.0)
        times = []
        with httpx.Client(base_url=service.base_url, timeout=30) as http:
            for _ in range(25):
                started = time.perf_counter()
                assert http.get("/health").status_code == 200
                times.append(time.perf_counter() - started)
                time.sleep(0.1)
        assert flood.wait(timeout=60) == 0
    finally:
        service.stop()
    assert sorted(times)[-2] < 0.15, sorted(times)[-5:]  # here: 0.02-0.04 s; before this change 0.4-0.8 s


# 12 --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, says", [
    (["--out", "s3://"], "names no valid bucket"), (["--out", "obs:///x"], "names no valid bucket"),
    (["--rate", "1e-300"], "would leave the run waiting"), (["--rate", "inf"], "finite"),
    (["--shard-size", "0"], "shard_size"), (["--out", "gs://bucket/x"], "unsupported scheme")])
def test_out_and_numeric_options_are_checked_before_the_run(tmp_path, args, says):
    (tmp_path / "src").mkdir()
    started = time.monotonic()
    run = subprocess.run([IMGREC, "run", str(tmp_path / "src"), "--out", str(tmp_path / "out"), *args],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 2 and says in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert time.monotonic() - started < 10
    assert not (tmp_path / "s3:").exists() and not (tmp_path / "out").exists()
