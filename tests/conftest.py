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
def file_server(photos):
    server = FileServer({f"{name}.jpg": data for name, data in photos.items()} | {"empty.jpg": b""},
                        redirect_to="http://127.0.0.1:9/secret")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def service(tmp_path_factory, gallery, file_server):
    folder = tmp_path_factory.mktemp("service")
    extra = f"""
[url_fetch]
allow = ["127.0.0.1:{file_server.port}"]
timeout_seconds = 3
"""
    config = write_config(folder, gallery, extra)
    proc = ServiceProcess(config, folder / "service.log")
    yield proc
    proc.stop()
