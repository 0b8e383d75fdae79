"""The run report's HTML page is self-contained and renders in headless Chromium."""
from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgrec.tasks.job import Job
from imgrec.tasks.latency import LatencyHistogram
from imgrec.tasks.shard_worker import ShardStats
from imgrec.tasks.report import markdown, render_html, summarize, write_report
from imgrec.tasks.formats.parquet import table_file, write_table


def _summary(tmp_path):
    job = Job(run_id="20261126T000000Z-test", flow="catalog-tagging", source=str(tmp_path), out=str(tmp_path),
              apis=["image_tagging"], started_at=datetime.now(timezone.utc) - timedelta(seconds=12),
              unit_price_per_call=0.002)
    stats = ShardStats(shard=0, objects=40, status={"ok": 35, "failed": 3, "invalid": 2}, calls=44,
                       calls_by_api={"image_tagging": 44}, call_errors=3,
                       retries=4, latency=LatencyHistogram.of(np.random.default_rng(0).gamma(4, 30, 38)),
                       error_codes={"AIS.0503": 2, "APIG.0308": 3})
    return job, summarize(job, 40, [stats], datetime.now(timezone.utc))


def test_report_is_self_contained(tmp_path):
    job, summary = _summary(tmp_path)
    page = render_html(summary)
    assert "<svg" in page and "http://" not in page and "https://" not in page and "<script src" not in page
    assert summary["estimated_cost"] == pytest.approx(0.088)
    paths = write_report(job, summary)
    assert '"latency_bars"' in Path(paths["json"]).read_text()


def test_report_lists_each_image_problems_first_and_counts_tags_per_image(tmp_path):
    job, _ = _summary(tmp_path)
    job.apis = ["image_tagging", "media_tagging", "recapture_detect"]
    ids = {"run_id": job.run_id, "source": job.source}

    def rows(table, items):
        path = table_file(tmp_path, table, job.run_date, job.run_id + "-s00000")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_table(path, table, [{**ids, **item} for item in items])

    rows("images", [{"key": "a/ok.jpg", "status": "ok"}, {"key": "b/photo.webp", "status": "invalid"},
                    {"key": "c/<b>bad</b>.jpg", "status": "failed"}])
    rows("errors", [{"key": "b/photo.webp", "api": "recapture_detect", "error_code": "AIS.0502",
                     "error_msg": "image format WEBP is not supported"},
                    {"key": "c/<b>bad</b>.jpg", "api": "image_tagging", "error_code": "APIG.0308",
                     "error_msg": "rate limited"}])
    rows("tags", [{"key": k, "api": api, "tag": "person", "tag_en": "person", "confidence": 90.0}
                  for k in ("a/ok.jpg", "b/photo.webp") for api in ("image_tagging", "media_tagging")]
         + [{"key": "a/ok.jpg", "api": "image_tagging", "tag": "horse", "tag_en": "horse", "confidence": 70.0}])
    summary = summarize(job, 3, [ShardStats(shard=0, objects=3, status={"ok": 1, "invalid": 1, "failed": 1})],
                        datetime.now(timezone.utc))
    assert summary["top_tags"] == [["person", 2], ["horse", 1]]  # images, not calls (4 person tags)
    assert [row["key"] for row in summary["images"]] == ["c/<b>bad</b>.jpg", "b/photo.webp", "a/ok.jpg"]
    invalid = summary["images"][1]
    assert invalid["outcomes"] == {"image_tagging": "ok", "media_tagging": "ok", "recapture_detect": "AIS.0502"}
    assert invalid["errors"] == [["recapture_detect", "AIS.0502", "image format WEBP is not supported"]]
    assert summary["images"][2]["tags"] == ["person", "horse"]
    page = render_html(summary)
    assert "image format WEBP is not supported" in page and "c/&lt;b&gt;bad&lt;/b&gt;.jpg" in page  # escaped
    assert page.count('style="background: #f59e0b"') == 1 and page.count('style="background: #ef4444"') == 1
    md = markdown(summary)
    assert "| b/photo.webp | invalid | ok | ok | AIS.0502 | person; recapture_detect: AIS.0502 image format" in md


def _gallery_run(tmp_path):
    """A run over a real folder: a cat photo with a detected box, a dark photo with a low-light result, and
    a file that is no image; tables as the pipeline writes them."""
    from tests.helpers import encode, photo

    source = tmp_path / "photos"
    source.mkdir()
    (source / "cat.jpg").write_bytes(encode(photo("chelsea")))
    (source / "dark.png").write_bytes(encode((photo("coffee") // 6).astype(np.uint8), "PNG"))
    (source / "broken.jpg").write_bytes(b"not an image")
    result = tmp_path / "out" / "enhanced_images" / "dark_enhance" / "dark.png"
    result.parent.mkdir(parents=True)
    result.write_bytes(encode(photo("coffee"), "PNG"))
    job = Job(run_id="20261128T000000Z-gallery", flow="catalog-tagging", source=str(source), out=str(tmp_path / "out"),
              apis=["image_tagging", "dark_enhance"], started_at=datetime.now(timezone.utc))
    ids = {"run_id": job.run_id, "source": job.source}

    def rows(table, items):
        path = table_file(Path(job.out), table, job.run_date, job.run_id + "-s00000")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_table(path, table, [{**ids, **item} for item in items])

    rows("images", [{"key": "cat.jpg", "status": "ok"}, {"key": "dark.png", "status": "ok"},
                    {"key": "broken.jpg", "status": "invalid"}])
    rows("errors", [{"key": "broken.jpg", "api": api, "error_code": "AIS.0503", "error_msg": "the image is damaged"}
                    for api in job.apis])
    rows("detections", [{"key": "cat.jpg", "api": api, "label": "cat", "label_en": "cat", "confidence": 91.0,
                         "x_norm": 0.25, "y_norm": 0.1, "width_norm": 0.6, "height_norm": 0.85}
                        for api in ("image_tagging", "media_tagging_det")])  # one cat, two APIs: one box
    rows("tags", [{"key": "cat.jpg", "api": "image_tagging", "tag": "cat", "tag_en": "cat", "confidence": 91.0}])
    rows("enhanced", [{"key": "dark.png", "api": "dark_enhance", "output_uri": result.as_uri(), "output_format": "PNG"}])
    summary = summarize(job, 3, [ShardStats(shard=0, objects=3, status={"ok": 2, "invalid": 1})],
                        datetime.now(timezone.utc))
    return job, summary


def test_gallery_shows_thumbnails_boxes_results_within_bounds(tmp_path, monkeypatch):
    from imgrec.tasks import gallery

    job, summary = _gallery_run(tmp_path)
    cards = {card["key"]: card for card in gallery.gallery(job, summary["images"])}
    assert list(cards) == ["broken.jpg", "cat.jpg", "dark.png"]  # the report's order: problems first
    assert cards["broken.jpg"]["thumb"] is None
    assert cards["broken.jpg"]["errors"] == [["every API", "AIS.0503", "the image is damaged"]]  # one line, not two
    cat = cards["cat.jpg"]
    assert cat["thumb"].startswith("data:image/jpeg;base64,") and max(cat["width"], cat["height"]) == 200
    assert [box["label"] for box in cat["boxes"]] == ["cat"] and cat["boxes"][0]["x"] == pytest.approx(50, abs=1)
    assert [after["api"] for after in cards["dark.png"]["after"]] == ["dark_enhance"]
    page = render_html(summary, list(cards.values()))
    assert page.count('class="card"') == 3 and page.count('class="box"') == 1 and "<script src" not in page
    monkeypatch.setattr(gallery, "GALLERY_BYTES", len(cat["thumb"]) + 10)  # the byte bound stops the sheet
    assert [card["key"] for card in gallery.gallery(job, summary["images"])] == ["broken.jpg", "cat.jpg"]


def test_latency_histogram_is_bounded_and_close_to_exact():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.gamma(4, 30, 200_000), rng.uniform(2_000, 60_000, 500), [0.0, 0.004]])
    whole = LatencyHistogram()
    for part in np.array_split(values, 7):  # as shards would: each its own, merged in the flow
        whole.merge(LatencyHistogram.of(part))
    ordered = np.sort(values)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        exact = ordered[int(q * (len(ordered) - 1))]
        assert abs(whole.percentile(q) - exact) <= 0.03 * exact, q
    assert whole.count == len(values) and whole.max_ms == values.max()
    assert whole.mean() == pytest.approx(values.mean())
    assert len(whole.buckets) < 300  # however many calls
    assert sum(n for _, n in whole.bars()) == len(values) and len(whole.bars()) <= 12
    again = LatencyHistogram.from_dict(whole.to_dict())
    assert again == whole and LatencyHistogram().percentile(0.5) is None


def screenshot(page: Path, shot: Path, height: int = 1400) -> np.ndarray:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={shot.parent / 'profile'}", f"--screenshot={shot}", f"--window-size=1000,{height}",
                    page.as_uri()], check=True, capture_output=True, timeout=120)
    return np.asarray(Image.open(shot).convert("RGB"))


def test_report_renders_in_headless_chromium(tmp_path):
    job, summary = _summary(tmp_path)
    pixels = screenshot(Path(write_report(job, summary)["html"]), tmp_path / "report.png")
    # the status chart's green bars and the error chart's red bars were drawn
    green = ((pixels[..., 1] > 150) & (pixels[..., 0] < 60) & (pixels[..., 2] < 150)).sum()
    red = ((pixels[..., 0] > 200) & (pixels[..., 1] < 100) & (pixels[..., 2] < 100)).sum()
    assert green > 500 and red > 200


def test_gallery_renders_in_headless_chromium(tmp_path):
    """The screenshot is kept in the test's folder (and copied to $IMGREC_SCREENSHOTS when set, for a look)."""
    import os

    job, summary = _gallery_run(tmp_path)
    page = Path(write_report(job, summary)["html"])
    pixels = screenshot(page, tmp_path / "gallery.png", height=2200)
    if os.environ.get("IMGREC_SCREENSHOTS"):
        shutil.copy(tmp_path / "gallery.png", Path(os.environ["IMGREC_SCREENSHOTS"]) / "report-gallery.png")
    yellow = ((pixels[..., 0] > 220) & (pixels[..., 1] > 180) & (pixels[..., 2] < 80)).sum()  # the cat's box
    amber = ((pixels[..., 0] > 230) & (abs(pixels[..., 1].astype(int) - 158) < 20) & (pixels[..., 2] < 40)).sum()
    photo_pixels = (pixels.std(axis=2) > 25).sum()  # colourful thumbnails, not a white page
    assert yellow > 300 and amber > 50 and photo_pixels > 20_000


def test_recapture_verdicts_read_as_recaptured_yes_or_no(tmp_path):
    job, _ = _summary(tmp_path)
    path = table_file(tmp_path, "recapture", job.run_date, job.run_id + "-s00000")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table(path, "recapture", [{"run_id": job.run_id, "source": job.source, "key": k, "api": "recapture_detect",
                                     "suggestion": s} for k, s in (("a", "true"), ("b", "true"), ("c", "false"))])
    summary = summarize(job, 3, [ShardStats(shard=0, objects=3, status={"ok": 3})], datetime.now(timezone.utc))
    assert summary["recapture_verdicts"] == [["recaptured: no (true)", 2], ["recaptured: yes (false)", 1]]
