from __future__ import annotations

import os

import pytest

from tests.helpers import FileServer, ServiceProcess, encode, photo, write_config

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    """Real photographs as JPEG bytes."""
    return {name: encode(photo(name)) for name in ("astronaut", "chelsea", "coffee", "camera", "rocket")}


@pytest.fixture(scope="session")
def gallery(tmp_path_factory):
    """A celebrity gallery: the astronaut (Eileen Collins) as the only known person."""
    root = tmp_path_factory.mktemp("gallery")
    (root / "Eileen Collins").mkdir()
    (root / "Eileen Collins" / "portrait.jpg").write_bytes(encode(photo("astronaut")))
    return root


@pytest.fixture(scope="session")
def music_library(tmp_path_factory):
    """Three synthetic 20-second pieces, stored as m4a like a real music folder."""
    from tests.helpers import song, write_media

    root = tmp_path_factory.mktemp("music")
    for seed, title in enumerate(["Harbour Lights", "Paper Kites", "Slow Orbit"]):
        write_media(song(seed, 20.0), 22050, root / f"{title}.m4a", with_video=False)
    return root


@pytest.fixture(scope="session")
def file_server(photos):
    server = FileServer({f"{name}.jpg": data for name, data in photos.items()} | {"empty.jpg": b""},
                        redirect_to="http://127.0.0.1:9/secret")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def service(tmp_path_factory, gallery, file_server, music_library):
    folder = tmp_path_factory.mktemp("service")
    extra = f"""
[bgm]
library = "{music_library}"

[engines.image_tagging_v1]
enabled = false

[url_fetch]
allow = ["127.0.0.1:{file_server.port}"]
timeout_seconds = 3

[console]
enabled = true
"""
    config = write_config(folder, gallery, extra)
    proc = ServiceProcess(config, folder / "service.log")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def prefect_api():
    """A Prefect server (SQLite, temporary) for the session; its URL is handed to subprocesses too."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a loopback port; boto3 reaches it through the standard environment variables."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL_S3": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield {"host": host, "port": port, "env": env, "url": env["AWS_ENDPOINT_URL_S3"]}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server (Debian's postgresql, scripts/system-deps.sh) on a loopback port, for the
    Iceberg SQL catalog; run as the postgres user when the tests run as root (postgres refuses root)."""
    import glob
    import shutil
    import subprocess

    from tests.helpers import free_port

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        pytest.fail("PostgreSQL is not installed: scripts/system-deps.sh installs it (apt-get install postgresql)")
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="imgrec-postgres-"))  # not under pytest's root-only folder
    data, port = folder / "data", free_port()
    as_user = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    subprocess.run([*as_user, f"{bins[-1]}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*as_user, f"{bins[-1]}/pg_ctl", "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True, timeout=120)
    yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    subprocess.run([*as_user, f"{bins[-1]}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                   capture_output=True, timeout=60)
    shutil.rmtree(folder, ignore_errors=True)
