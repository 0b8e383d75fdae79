"""A source folder with every kind of bad entry: each recorded, none aborting or hanging the run (issue 18)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import encode, photo, read_table

IMGREC = str(Path(sys.executable).parent / "imgrec")


def _bad_folder(root: Path, outside: Path) -> None:
    root.mkdir()
    outside.mkdir()
    (root / "good.jpg").write_bytes(encode(photo("coffee")))
    (outside / "secret.jpg").write_bytes(encode(photo("camera")))
    (root / "dangling.jpg").symlink_to(root / "nothing-here.jpg")
    (root / "loop.jpg").symlink_to(root / "loop.jpg")
    (root / "outside.jpg").symlink_to(outside / "secret.jpg")
    os.mkfifo(root / "fifo.jpg")
    with open(os.path.join(os.fsencode(root), b"caf\xe9.jpg"), "wb") as fh:  # a Latin-1 name, not UTF-8
        fh.write(encode(photo("chelsea")))
    with open(root / "huge.jpg", "wb") as fh:  # 3 GiB, sparse: nothing to read but its size
        fh.truncate(3 << 30)


# The run's own peak RSS, measured from a small parent: a child's ru_maxrss starts at its parent's RSS at the
# fork (Linux keeps the high-water mark across exec), so measured from pytest it would be pytest's own size.
_PEAK_RSS = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_every_bad_entry_is_recorded_and_the_good_photo_processed(prefect_api, tmp_path):
    source, out = tmp_path / "catalog", tmp_path / "out"
    _bad_folder(source, tmp_path / "elsewhere")
    peak_file = tmp_path / "peak-rss-kib"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(peak_file),
                           IMGREC, "run", str(source), "--out", str(out), "--apis", "image_tagging"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PREFECT_API_URL": prefect_api})
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 60
    peak_kib = int(peak_file.read_text())
    assert peak_kib / 1024 < 1024, peak_kib  # the 3 GiB file was never read
    images = {r["key"]: r["status"] for r in read_table(out, "images")}
    errors = {r["key"]: (r["error_code"], r["error_msg"]) for r in read_table(out, "errors")}
    assert images["good.jpg"] == "ok"
    expected = {"dangling.jpg": "dangling", "loop.jpg": "loops", "outside.jpg": "out of the source folder",
                "fifo.jpg": "not a regular file", "caf\\xe9.jpg": "not valid UTF-8"}
    for key, why in expected.items():
        assert images[key] == "invalid", (key, images)
        assert errors[key][0] == "AIS.0201" and why in errors[key][1], (key, errors[key])
    assert images["huge.jpg"] == "invalid" and errors["huge.jpg"][0] == "AIS.0020"
    assert set(images) == set(expected) | {"good.jpg", "huge.jpg"}
    # nothing to redo on the next run: every entry is either done or recorded as refused
    again = subprocess.run([IMGREC, "run", str(source), "--out", str(out), "--apis", "image_tagging"],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "PREFECT_API_URL": prefect_api})
    assert again.returncode == 0 and "skipped 7" in again.stdout, again.stdout + again.stderr
