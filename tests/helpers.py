"""Test helpers: sample photographs no one here wrote (scikit-image), a real service on loopback."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

AK, SK, PROJECT = "AKTESTKEY0000000", "sk-test-secret-value-0123456789", "0123456789abcdef0123456789abcdef"
OTHER_AK, OTHER_SK, OTHER_PROJECT = "AKOTHERKEY000000", "sk-other-secret-value-98765", "fedcba9876543210fedcba9876543210"
DOMAIN, USER, PASSWORD, PROJECT_NAME = "acme", "alice", "alice-password-123", "cn-north-4"


def photo(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return img[..., :3].astype(np.uint8)


def encode(array: np.ndarray, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path, gallery: Path | None = None, extra: str = "") -> Path:
    config = folder / "imgrec.toml"
    text = f"""
[[credentials]]
access_key = "{AK}"
secret_key = "{SK}"
project_id = "{PROJECT}"

[[credentials]]
access_key = "{OTHER_AK}"
secret_key = "{OTHER_SK}"
project_id = "{OTHER_PROJECT}"

[[users]]
domain = "{DOMAIN}"
name = "{USER}"
password = "{PASSWORD}"
project_id = "{PROJECT}"
project_name = "{PROJECT_NAME}"
"""
    if gallery is not None:
        text += f'\n[celebrity]\ngallery = "{gallery}"\n'
    config.write_text(text + extra)
    return config


class ServiceProcess:
    """`imgrec serve` as a real subprocess on a loopback port."""

    def __init__(self, config: Path, log_path: Path, workers: int = 1, env: dict | None = None,
                 port: int | None = None):
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        imgrec = Path(sys.executable).parent / "imgrec"
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [str(imgrec), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--config", str(config),
             "--workers", str(workers)],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.base_url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("service did not become healthy")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class FileServer:
    """A loopback HTTP server for `url` inputs: files, redirects, slow and endless bodies."""

    def __init__(self, files: dict[str, bytes], redirect_to: str = ""):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                if path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", outer.redirect_to)
                    self.end_headers()
                elif path == "/slow":
                    time.sleep(30)
                elif path == "/endless":
                    self.send_response(200)
                    self.end_headers()
                    try:
                        while not outer.stopping:
                            self.wfile.write(b"\0" * 65536)
                    except OSError:
                        pass
                elif path == "/forbidden":
                    self.send_response(403)
                    self.end_headers()
                elif path.lstrip("/") in outer.files:
                    data = outer.files[path.lstrip("/")]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self.send_response(404)
                    self.end_headers()

        self.files = files
        self.redirect_to = redirect_to
        self.stopping = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopping = True
        self.server.shutdown()


def catalog_files() -> dict[str, bytes]:
    """A small catalog: real photographs in JPEG/PNG/WEBP, plus the inputs a nightly job meets in the wild."""
    import struct
    import zlib

    files: dict[str, bytes] = {}
    for name in ("astronaut", "chelsea", "coffee", "camera", "rocket"):
        img = photo(name)
        files[f"photos/{name}.jpg"] = encode(img)
        files[f"photos/png/{name}.png"] = encode(img, "PNG")
        files[f"photos/webp/{name}.webp"] = encode(img, "WEBP", quality=80)
    files["photos/mirrored-astronaut.jpg"] = encode(np.ascontiguousarray(photo("astronaut")[:, ::-1]))
    jpeg = files["photos/coffee.jpg"]
    files["broken/truncated.jpg"] = jpeg[: len(jpeg) // 3]
    files["broken/not-an-image.png"] = b"<html>this is a web page saved under an image name</html>"
    files["broken/empty.jpg"] = b""
    files["broken/animated.gif"] = encode(photo("coffee"), "GIF")
    # 12000 x 8 px: small in bytes, but over every endpoint's 10000-px side limit.
    files["broken/too-wide.png"] = encode(np.zeros((8, 12000, 3), np.uint8), "PNG")
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    files["broken/bomb.png"] = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    files["notes/readme.txt"] = b"not part of the catalog: no image suffix"
    return files


def upload(bucket: str, files: dict[str, bytes]) -> None:
    import boto3

    s3 = boto3.client("s3")
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)
    for key, data in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)


def read_table(out, table: str, where: str = "") -> list[dict]:
    import duckdb

    from pathlib import Path

    if not list(Path(out, table).glob("run_date=*/*.parquet")):
        return []
    con = duckdb.connect()
    rel = con.sql(f"SELECT * FROM read_parquet('{out}/{table}/**/*.parquet', hive_partitioning=true) {where}")
    cols = rel.columns
    return [dict(zip(cols, row)) for row in rel.fetchall()]


def song(seed: int, seconds: float = 30.0, rate: int = 22050) -> np.ndarray:
    """A synthetic piece: a random melody with harmonics over a bass line and noise-burst drums."""
    rng = np.random.default_rng(seed)
    t_note = 0.25
    notes = rng.integers(48, 84, int(seconds / t_note))
    bass = rng.integers(36, 48, int(seconds / (4 * t_note)))
    out = np.zeros(int(seconds * rate), np.float32)
    n = int(t_note * rate)
    env = np.exp(-np.linspace(0, 4, n)).astype(np.float32)
    t = np.arange(n) / rate
    for i, midi in enumerate(notes):
        f = 440.0 * 2 ** ((midi - 69) / 12)
        tone = sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3))
        out[i * n:(i + 1) * n] += 0.3 * env * tone
    for i, midi in enumerate(bass):
        f = 440.0 * 2 ** ((midi - 69) / 12)
        start = i * 4 * n
        seg = out[start:start + 4 * n]
        tt = np.arange(len(seg)) / rate
        seg += 0.25 * np.sin(2 * np.pi * f * tt).astype(np.float32)
    for i in range(0, len(out), 2 * n):
        burst = rng.normal(0, 0.2, min(n // 4, len(out) - i)).astype(np.float32)
        out[i:i + len(burst)] += burst * np.exp(-np.linspace(0, 6, len(burst))).astype(np.float32)
    return out / np.abs(out).max() * 0.8


def write_media(samples: np.ndarray, rate: int, path, fmt: str = "mp4", with_video: bool = True) -> None:
    """Encode mono float samples as AAC in an mp4 (with a small video track, like a real clip)."""
    import av

    with av.open(str(path), "w", format=fmt) as container:
        video = None
        if with_video:
            video = container.add_stream("mpeg4", rate=5)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=rate)
        audio.layout = "mono"
        frame_size = 1024
        for start in range(0, len(samples), frame_size):
            chunk = samples[start:start + frame_size]
            if len(chunk) < frame_size:
                chunk = np.pad(chunk, (0, frame_size - len(chunk)))
            frame = av.AudioFrame.from_ndarray(chunk[None, :].astype(np.float32), format="fltp", layout="mono")
            frame.rate = rate
            frame.pts = start
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
        if video is not None:
            for i in range(int(len(samples) / rate * 5)):
                img = np.full((48, 64, 3), (i * 7) % 255, np.uint8)
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                vf.pts = i
                for packet in video.encode(vf):
                    container.mux(packet)
            for packet in video.encode(None):
                container.mux(packet)
