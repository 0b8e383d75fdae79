"""Fast tests of pure code: settings loading, run parameters, request resolution, normalizers, the shard
commit and its recovery, the token bucket, the failed/invalid rule. No servers, no models."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from imgrec import schemas
from imgrec.connectors.ratelimit import TokenBucket
from imgrec.schemas import celebrity_recognition, image_tagging, main_object_detection, recapture_detect
from imgrec.schemas.errors import ApiError
from imgrec.settings import Settings
from imgrec.tasks import writing
from imgrec.tasks.formats import parquet
from imgrec.schemas.run import RunParameters
from imgrec.tasks.job import Job
from imgrec.tasks.normalize import Context, normalize
from imgrec.tasks.shard_worker import refuses_input
from tests.helpers import encode, photo


# ------------------------------------------------------------------------------------------------ settings
def test_unknown_config_keys_fail_with_their_name(tmp_path):
    config = tmp_path / "imgrec.toml"
    for text, name in [("[auth]\nenabld = false\n", "enabld"), ("[pipelin]\nconcurrency = 3\n", "pipelin"),
                       ("[pipeline]\nconcurency = 3\n", "concurency"),
                       ("[engines.celebrity_recogniton]\nenabled = false\n", "celebrity_recogniton"),
                       ('[models.classifier]\npath = "a.onnx"\nlabels = "a.csv"\ninput_sise = 3\n', "input_sise")]:
        config.write_text(text)
        with pytest.raises(ValidationError, match=name):
            Settings.load(config)


def test_paths_in_a_config_file_are_relative_to_it_and_env_wins(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "imgrec.toml"
    config.write_text('models_dir = "models"\n[celebrity]\ngallery = "people"\n[pipeline]\nconcurrency = 3\n'
                      '[engines.defog]\nenabled = false\n')
    monkeypatch.chdir(tmp_path)
    settings = Settings.load(config)
    assert settings.celebrity.gallery == tmp_path / "conf" / "people"
    assert settings.models_dir == tmp_path / "conf" / "models"
    assert settings.pipeline.concurrency == 3 and not settings.engine("defog").enabled
    assert settings.engine("dark_enhance").enabled
    monkeypatch.setenv("IMGREC_PIPELINE__CONCURRENCY", "5")
    monkeypatch.setenv("IMGREC_MODELS_DIR", str(tmp_path / "elsewhere"))
    settings = Settings.load(config)
    assert settings.pipeline.concurrency == 5 and settings.models_dir == tmp_path / "elsewhere"
    monkeypatch.setenv("IMGREC_CONFIG", str(config))  # the file may come from the environment too
    assert Settings.load().config_file == config


def test_secrets_never_print(monkeypatch):
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "very-secret-key")
    settings = Settings.load()
    assert "very-secret-key" not in repr(settings) and "very-secret-key" not in str(settings.model_dump())
    assert settings.client.secret_key.get_secret_value() == "very-secret-key"


# -------------------------------------------------------------------------------------- run parameters
def test_run_parameters_fall_back_to_the_settings_file():
    defaults = RunParameters(concurrency=3, shard_size=50, params={"image_tagging": {"threshold": 30}})
    run = RunParameters(source="cat", concurrency=5, params={"recapture_detect": {"threshold": 0.9}})
    merged = run.over(defaults)
    assert (merged.source, merged.concurrency, merged.shard_size) == ("cat", 5, 50)
    assert merged.params == {"image_tagging": {"threshold": 30}, "recapture_detect": {"threshold": 0.9}}
    assert RunParameters().over(defaults).concurrency == 3


def test_run_parameters_check_apis_and_request_parameters():
    assert RunParameters(apis=["main_object_detection", "image_tagging", "image_tagging"]).apis == [
        "image_tagging", "main_object_detection"]  # each once, in the reference's order
    with pytest.raises(ValidationError, match="'tagging' is not an API; catalog APIs: image_tagging, "):
        RunParameters(apis=["tagging"])
    with pytest.raises(ValidationError, match="takes a video URL"):
        RunParameters(apis=["bgm_recognition"])
    with pytest.raises(ValidationError, match=r"image_tagging: AIS.0501.*its parameters: language, threshold"):
        RunParameters(params={"image_tagging": {"threshold": 300}})
    with pytest.raises(ValidationError, match="AIS.0012"):
        RunParameters(params={"image_tagging": {"treshold": 30}})
    with pytest.raises(ValidationError, match="mode"):
        RunParameters(mode="urls")
    with pytest.raises(ValidationError, match="concurrency"):
        RunParameters(concurrency=0)
    naive = RunParameters(modified_since=datetime(2026, 1, 1))
    assert naive.modified_since.tzinfo is timezone.utc


def test_job_takes_the_backends_apis_when_none_are_named(tmp_path):
    run = RunParameters(source=str(tmp_path), out=str(tmp_path / "out"))
    job = Job.create("f", "r1", run, ["image_tagging", "defog", "recapture_detect"], None)
    assert job.apis == ["image_tagging", "recapture_detect"]  # image-out APIs only when asked for
    assert job.out == str((tmp_path / "out").resolve())
    assert job.resolved_params("image_tagging") == {"language": "zh", "threshold": 60.0, "limit": 150}
    assert json.loads(json.dumps(job.public_parameters()))["apis"] == job.apis
    with pytest.raises(ValueError, match="no source"):
        Job.create("f", "r1", RunParameters(), ["image_tagging"], None)
    with pytest.raises(ValueError, match="no APIs"):
        Job.create("f", "r1", run, ["defog"], None)
    assert Job.model_validate(job.model_dump()) == job  # what Prefect and Dask ship between processes


def test_reused_answers_are_keyed_by_who_answered(tmp_path):
    """A byte-identical twin is handed a kept answer only from the same engines build or service: a changed
    model (its pinned digest), weight or engine file gives another key, the parameters' hash stays."""
    from imgrec.engines.base import build_digest
    from imgrec.run_backend import answered_by
    from imgrec.settings import Settings

    models = tmp_path / "models"
    models.mkdir()
    (models / "centernet.onnx.sha256").write_text("aaaa\n")
    before = build_digest(str(models))
    (models / "centernet.onnx.sha256").write_text("bbbb\n")
    build_digest.cache_clear()
    assert build_digest(str(models)) != before
    run = RunParameters(source=str(tmp_path), out=str(tmp_path / "out"))
    old, new = (Job.create("f", "r1", run, ["image_tagging"], None, answered_by=who) for who in ("local:1", "local:2"))
    assert old.params_hash("image_tagging") == new.params_hash("image_tagging")  # the ledger's: no re-run
    assert old.answer_hash("image_tagging") != new.answer_hash("image_tagging")
    settings = Settings()
    assert answered_by(run, settings).startswith("local:")
    remote = RunParameters(source=str(tmp_path), backend="http", endpoint="http://127.0.0.1:8080")
    assert answered_by(remote, settings) == "http:http://127.0.0.1:8080"


# ------------------------------------------------------------------------------------------- requests
def test_requests_resolve_without_a_body():
    spec = schemas.spec("recapture_detect")
    assert spec.resolve_params({}) == {"threshold": 0.95}
    assert spec.resolve_params({"threshold": 7}) == {"threshold": 0.95}  # the reference's fallback
    request = spec.request({"threshold": 0.5}, image=b"\xff\xd8 bytes")
    assert request.params == {"threshold": 0.5} and request.image_bytes == b"\xff\xd8 bytes"
    for kwargs, code in [({}, "AIS.0011"), ({"image": b"x", "url": "https://a/b.jpg"}, "AIS.0501"),
                         ({"url": "ftp://a/b.jpg"}, "AIS.0022"), ({"image": b""}, "AIS.0011")]:
        with pytest.raises(ApiError) as info:
            spec.request({}, **kwargs)
        assert info.value.code == code
    with pytest.raises(ApiError) as info:
        schemas.spec("defog").request({}, url="https://a/b.jpg")
    assert info.value.code == "AIS.0012"
    with pytest.raises(ApiError) as info:
        schemas.spec("image_tagging").request({}, image=b"x" * (8 * 1024 * 1024))  # 10.7 MB as base64
    assert info.value.code == "AIS.0020"


@pytest.mark.parametrize("code,retryable,invalid", [
    ("AIS.0503", False, True), ("AIS.0504", False, True), ("AIS.0502", False, True),
    ("AIS.0201", True, False), ("APIG.0308", True, False), ("APIG.0301", False, False),
    ("AIS.0007", False, False), ("NET.CONNECTION", True, False)])
def test_which_refusals_make_an_image_invalid(code, retryable, invalid):
    assert refuses_input(ApiError(code=code, retryable=retryable)) is invalid


# ---------------------------------------------------------------------------------------- normalizers
def _ctx(api: str, **kwargs) -> Context:
    return Context("r1", "src", "a/b.jpg", api, 200, 100, **kwargs)


def test_tag_normalizer_ranks_tags_and_normalises_boxes():
    response = image_tagging.Response.model_validate({"result": {"tags": [
        {"confidence": "91.50", "type": "动物", "tag": "猫", "i18n_tag": {"zh": "猫", "en": "cat"},
         "i18n_type": {"zh": "动物", "en": "Animal"}, "instances": [
             {"bounding_box": {"width": 50, "height": 25, "top_left_x": 100, "top_left_y": 50}, "confidence": "90"}]},
        {"confidence": "60", "type": "颜色", "tag": "红色", "i18n_tag": {"zh": "红色", "en": "Red"},
         "i18n_type": {"zh": "颜色", "en": "Colour"}}]}})
    rows = normalize(image_tagging.SPEC, response, _ctx("image_tagging", params={"language": "zh"}))
    assert [(t["tag_en"], t["rank"], t["confidence"]) for t in rows["tags"]] == [("cat", 1, 91.5), ("Red", 2, 60.0)]
    (box,) = rows["detections"]
    assert (box["label_en"], box["x_norm"], box["y_norm"], box["width_norm"], box["height_norm"]) == (
        "cat", 0.5, 0.5, 0.25, 0.25)


def test_face_object_and_recapture_normalizers_scale_to_0_100():
    faces = celebrity_recognition.Response.model_validate({"result": [
        {"confidence": 0.97, "label": "Eileen Collins", "face_detail": {"x": 20, "y": 10, "w": 40, "h": 50}}]})
    (face,) = normalize(celebrity_recognition.SPEC, faces, _ctx("celebrity_recognition"))["faces"]
    assert face["confidence"] == pytest.approx(97.0) and face["width_norm"] == 0.2
    objects = main_object_detection.Response.model_validate({"result": [{"label": "main_object_box", "confidence": "88",
        "location": {"width": 100, "height": 50, "top_left_x": 0, "top_left_y": 0}}]})
    (main,) = normalize(main_object_detection.SPEC, objects, _ctx("main_object_detection"))["main_objects"]
    assert (main["label"], main["confidence"], main["height_norm"]) == ("main_object_box", 88.0, 0.5)
    verdict = recapture_detect.Response.model_validate({"result": {"suggestion": "false", "category": "recapture",
        "score": "0.9800", "detail": [{"label": "recapture", "confidence": "0.9800"}]}})
    (row,) = normalize(recapture_detect.SPEC, verdict, _ctx("recapture_detect"))["recapture"]
    assert (row["suggestion"], row["score"], row["detail_confidence"]) == ("false", pytest.approx(98.0), pytest.approx(98.0))


def test_image_out_normalizer_stores_the_image(tmp_path):
    png = encode(photo("coffee")[:20, :30], "PNG")
    stored = {}

    def write(api, key, data, fmt):
        stored[(api, key, fmt)] = data
        return "file:///out/x.png"

    response = schemas.spec("defog").response(result=base64.b64encode(png).decode())
    (row,) = normalize(schemas.spec("defog"), response, _ctx("defog", write_output=write))["enhanced"]
    assert row["output_format"] == "PNG" and row["output_size"] == len(png) and stored == {("defog", "a/b.jpg", "PNG"): png}


# -------------------------------------------------------------------------------- shard commit, recovery
def _rows(n: int) -> dict[str, list[dict]]:
    now = datetime.now(timezone.utc)
    return {"images": [{"run_id": "r1", "source": "s", "key": f"k{i}", "status": "ok", "processed_at": now}
                       for i in range(n)], "faces": []}


def _ledger(n: int) -> list[dict]:
    return [{"api": "a", "params_hash": "h", "key": f"k{i}", "fingerprint": "f", "outcome": "ok", "run_id": "r1"}
            for i in range(n)]


def test_a_shard_commits_every_table_or_nothing(tmp_path):
    counts = writing.commit_shard(tmp_path, "2026-11-28", "r1-s00000", _rows(3), _ledger(3))
    assert counts == {"images": 3, "faces": 0}
    assert pq.read_table(parquet.table_file(tmp_path, "images", "2026-11-28", "r1-s00000")).num_rows == 3
    assert not (tmp_path / "faces").exists()  # an empty table writes no file
    assert not list((tmp_path / "_staging").iterdir())
    # a retried shard replaces its own files: still 3 rows, not 6
    writing.commit_shard(tmp_path, "2026-11-28", "r1-s00000", _rows(3), _ledger(3))
    assert pq.read_table(tmp_path / "images").num_rows == 3


def test_recovery_finishes_committed_shards_and_drops_the_rest(tmp_path):
    # A shard staged but not committed (the process died before the COMMIT marker): dropped.
    half = tmp_path / "_staging" / "r1-s00001"
    half.mkdir(parents=True)
    parquet.write_table(half / "images.parquet", "images", _rows(2)["images"])
    # A shard committed whose files were not all moved yet: finished.
    done = tmp_path / "_staging" / "r1-s00002"
    done.mkdir()
    parquet.write_table(done / "images.parquet", "images", _rows(4)["images"])
    parquet.write_table(done / "ledger.parquet", "_ledger", _ledger(4))
    moves = [["images.parquet", "images/run_date=2026-11-28/r1-s00002.parquet"],
             ["ledger.parquet", "_state/ledger/r1-s00002.parquet"]]
    (done / "COMMIT").write_text(json.dumps(moves))
    # A torn marker counts as not committed.
    torn = tmp_path / "_staging" / "r1-s00003"
    torn.mkdir()
    (torn / "COMMIT").write_text('[["images.parq')
    assert writing.recover(tmp_path) == {"finished": 1, "dropped": 2}
    assert pq.read_table(tmp_path / "images").num_rows == 4
    assert pq.read_table(writing.ledger_dir(tmp_path) / "r1-s00002.parquet").num_rows == 4
    assert writing.recover(tmp_path) == {"finished": 0, "dropped": 0}


# ----------------------------------------------------------------------------------------- rate limits
def test_token_bucket_spaces_requests_at_the_rate():
    bucket = TokenBucket(10.0)
    waits = [bucket.reserve() for _ in range(5)]
    assert waits[0] == pytest.approx(0.0, abs=1e-3)
    assert [b - a for a, b in zip(waits, waits[1:])] == pytest.approx([0.1] * 4, abs=1e-3)
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_token_bucket_keeps_no_more_than_its_burst(monkeypatch):
    import imgrec.connectors.ratelimit as ratelimit

    clock = [100.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: clock[0])
    bucket = TokenBucket(2.0, burst=3)
    clock[0] += 60  # a long idle time earns at most `burst` immediate requests
    assert [bucket.reserve() for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


@pytest.mark.parametrize("base,prefix,joined", [
    ("shop", "2026/10/", "shop/2026/10/"), ("shop/", "/2026/10/", "shop/2026/10/"), ("", "2026/10", "2026/10"),
    ("shop", "", "shop/"), ("", "", ""), ("a//", "//b/", "a/b/")])
def test_a_sources_prefix_is_a_folder_for_s3_and_obs_alike(base, prefix, joined):
    from imgrec.connectors.source import join_prefix

    assert join_prefix(base, prefix) == joined  # BucketSource lists s3:// and obs:// sources with this prefix


@pytest.mark.parametrize("code,status,kind,retryable,opens_breaker", [
    ("AIS.0503", 400, "input", False, False), ("AIS.0502", 400, "limit", False, False),
    ("APIG.0301", 401, "permanent", False, True), ("AIS.0007", 400, "permanent", False, True),
    ("APIG.0308", 429, "transient", True, False), ("NET.CONNECTION", 0, "unreachable", True, False),
    ("AIS.0505", 400, "failed", False, False),
    ("X.FOREIGN", 403, "permanent", False, True), ("X.FOREIGN", 503, "transient", True, False),
    ("X.FOREIGN", 400, "failed", False, False)])
def test_an_errors_kind_decides_retries_and_the_breaker(code, status, kind, retryable, opens_breaker):
    from imgrec.tasks.breaker import refusing

    err = ApiError(code=code, status=status)
    assert (err.kind, err.retryable, refusing(err)) == (kind, retryable, opens_breaker)
    assert ApiError(code="APIG.0308", status=429, retry_after=3.0).retry_after == 3.0  # carried, not patched on


def test_a_url_runs_refused_hosts_name_the_allow_list():
    from imgrec.tasks.breaker import CircuitBreaker

    breaker = CircuitBreaker(url_mode=True)
    for _ in range(5):
        breaker.attempt_failed(ApiError.of("AIS.0022"))
    assert breaker.open and "[url_fetch] allow" in breaker.refusal().message
    inline = CircuitBreaker()
    for _ in range(5):
        inline.attempt_failed(ApiError.of("AIS.0022"))  # inline: one bad URL says nothing of the service
    assert not inline.open


def test_tags_rank_recognition_before_pixel_measures_and_name_each_thing_once():
    from imgrec.engines.analysis import ranked
    from imgrec.engines.scene import Candidate

    tags = [Candidate("Black and white", "黑白", "concept", "concept", 100.0, pixel=True),
            Candidate("airship", "飞艇", "vehicle", "object", 71.0),
            Candidate("sports ball", "球", "goods", "object", 66.0),
            Candidate("soccer ball", "球", "goods", "object", 80.0)]
    assert [c.en for c in ranked(tags, 60, 10, "en")] == ["soccer ball", "airship", "sports ball", "Black and white"]
    assert [c.zh for c in ranked(tags, 60, 10, "zh")] == ["球", "飞艇", "黑白"]  # one 球, the stronger one
    assert [c.en for c in ranked(tags, 60, 2, "en")] == ["soccer ball", "airship"]


def test_the_photos_subject_ranks_before_what_else_is_in_it():
    from imgrec.engines.analysis import merge, ranked
    from imgrec.engines.scene import Candidate

    located = [Candidate("person", "人", "human", "object", 99.0), Candidate("cup", "杯子", "goods", "object", 70.0)]
    classified = [Candidate("banjo", "班卓琴", "goods", "object", 64.0, subject=True),
                  Candidate("coffee mug", "杯子", "goods", "object", 75.0),
                  Candidate("Red", "红色", "color", "concept", 100.0, pixel=True)]
    tags = merge(located, classified)
    assert [c.en for c in ranked(tags, 60, 10, "en")] == ["banjo", "person", "coffee mug", "cup", "Red"]
    assert [c.en for c in ranked(tags, 65, 10, "en")] == ["person", "coffee mug", "cup", "Red"]  # below the floor
    assert [c.zh for c in ranked(tags, 60, 10, "zh")] == ["班卓琴", "人", "杯子", "红色"]
    # the classifier's class merged into the detector's tag of the same name makes that tag the subject
    merged = merge([Candidate("dog", "狗", "animal", "object", 90.0)], [Candidate("dog", "狗", "animal", "object",
                                                                                 60.0, subject=True)])
    assert merged[0].subject and merged[0].confidence == 96.0


def test_a_runs_floor_keeps_the_tables_free_of_low_confidence_rows():
    from imgrec.schemas import image_tagging_v1
    from imgrec.schemas.shapes import I18n
    from imgrec.tasks.normalize import Context, normalize

    spec = image_tagging_v1.SPEC
    answer = spec.response(result=image_tagging_v1.Result(tags=[
        image_tagging_v1.Tag(confidence=c, tag=t, type="object", i18n_tag=I18n(zh=t, en=t))
        for t, c in (("cat", 91.0), ("kite", 12.5), ("sofa", 64.0))]))
    floored = normalize(spec, answer, Context("r", "s", "k", spec.name, 10, 10, min_confidence=60.0))
    assert [(r["tag"], r["rank"]) for r in floored["tags"]] == [("cat", 1), ("sofa", 2)]
    assert len(normalize(spec, answer, Context("r", "s", "k", spec.name, 10, 10))["tags"]) == 3
    # the documented default: every tagging API's rows at v2's default threshold
    assert RunParameters().min_confidence == {"image_tagging_v1": 60.0, "media_tagging": 60.0, "media_tagging_det": 60.0}
    with pytest.raises(ValueError, match="0-100"):
        RunParameters(min_confidence={"image_tagging": 101})


def test_json_shape_counts_what_the_string_blanking_regex_counts():
    """The service's pre-parse check finds strings with bytes.find; the regex it replaced is the reference."""
    import re

    import numpy as np
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from imgrec.service.app import MAX_JSON_VALUES, json_shape

    string = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')

    def reference(body: bytes) -> tuple[int, int]:
        structure = np.frombuffer(string.sub(b'""', body), np.uint8)
        steps = np.zeros(256, np.int8)
        steps[[ord("["), ord("{")]], steps[[ord("]"), ord("}")]] = 1, -1
        moves = steps[structure]
        moves = moves[moves != 0]
        return (int(np.cumsum(moves, dtype=np.int32).max()) if moves.size else 0,
                int(np.count_nonzero(structure == ord(","))))

    text = st.text(alphabet='ab"\\[]{},:\u00e9 ', max_size=12)
    values = st.recursive(st.none() | st.integers() | text,
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                          max_leaves=20)

    @settings(max_examples=300, deadline=None)
    @given(values)
    def same(value):
        body = json.dumps(value, ensure_ascii=False).encode()
        assert json_shape(body) == reference(body)

    same()
    for body in (b'{"a": "x\\\\"}', b'["\\\\\\"[", 1]', b'{"a": "unterminated [[[', b'"', b"", b'[[1],[2,[3]]]'):
        assert json_shape(body) == reference(body), body
    many = b"[" + b",".join([b'"s"'] * (MAX_JSON_VALUES + 1)) + b"]"
    assert json_shape(many)[1] > MAX_JSON_VALUES


def test_a_face_is_tagged_only_with_a_detected_person_around_it():
    """BlazeFace also finds dogs' and otters' faces: the analysis keeps a face only inside a person box the
    detector is at least FACE_PERSON_MIN sure of."""
    from imgrec.engines.analysis import FACE_PERSON_MIN, _of_a_person
    from imgrec.engines.detector import Detection, calibrated
    from imgrec.engines.faces import Face

    face = Face(100, 50, 40, 40, 0.9)
    sure = next(s / 100 for s in range(1, 100) if calibrated(s / 100) >= FACE_PERSON_MIN + 0.05)
    unsure = next(s / 100 for s in range(99, 0, -1) if calibrated(s / 100) < FACE_PERSON_MIN)
    person = Detection(0, sure, 80, 30, 200, 300)
    assert _of_a_person(face, [person])
    assert not _of_a_person(face, [Detection(0, sure, 300, 30, 400, 300)])  # the person is elsewhere
    assert not _of_a_person(face, [Detection(16, sure, 80, 30, 200, 300)])  # a dog (COCO 16) around it
    assert not _of_a_person(face, [Detection(0, unsure, 80, 30, 200, 300)])
    assert not _of_a_person(face, [])
