"""The self-hosted service on a real loopback port, called by the official SDK, the reference's sample code
and raw HTTP: success paths, auth, and every error class with its reference code."""
from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
import requests
from PIL import Image

from tests.helpers import AK, DOMAIN, OTHER_PROJECT, PASSWORD, PROJECT, PROJECT_NAME, SK, USER, encode, photo


def token_body(password=PASSWORD, project_name=PROJECT_NAME):
    # The body exactly as the reference's "Token 认证" section shows it.
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": USER, "password": password, "domain": {"name": DOMAIN}}}},
        "scope": {"project": {"name": project_name}}}}


@pytest.fixture(scope="module")
def token(service) -> str:
    resp = requests.post(service.base_url + "/v3/auth/tokens", json=token_body())
    assert resp.status_code == 201
    assert resp.json()["token"]["expires_at"].endswith("Z")
    return resp.headers["X-Subject-Token"]


def post(service, token, path, body=None, **kwargs):
    headers = {"X-Auth-Token": token, **kwargs.pop("headers", {})}
    if body is not None:
        kwargs["json"] = body
    return httpx.post(service.base_url + path, headers=headers, timeout=30, **kwargs)


def assert_error(resp, code, status=400):
    assert resp.status_code == status, resp.text
    assert resp.json()["error_code"] == code
    assert resp.json()["error_msg"]
    assert resp.headers["X-Request-Id"]


# ------------------------------------------------------------------------------------------ official SDK
def sdk_client(service, ak=AK, sk=SK, project=PROJECT):
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkimage.v2 import ImageClient

    return ImageClient.new_builder().with_credentials(BasicCredentials(ak, sk, project)) \
        .with_endpoint(service.base_url).build()


def sdk_operations(image_b64):
    from huaweicloudsdkimage.v2 import model as m

    return {
        "image_tagging": ("run_image_tagging", m.RunImageTaggingRequest(body=m.ImageTaggingReq(image=image_b64, threshold=10.0, limit=5))),
        "media_tagging": ("run_image_media_tagging", m.RunImageMediaTaggingRequest(body=m.ImageMediaTaggingReq(image=image_b64, language="en"))),
        "media_tagging_det": ("run_image_media_tagging_det", m.RunImageMediaTaggingDetRequest(body=m.ImageMediaTaggingDetReq(image=image_b64))),
        "celebrity_recognition": ("run_celebrity_recognition", m.RunCelebrityRecognitionRequest(body=m.CelebrityRecognitionReq(image=image_b64, threshold=0.5))),
        "main_object_detection": ("run_image_main_object_detection", m.RunImageMainObjectDetectionRequest(body=m.ImageMainObjectDetectionReq(image=image_b64))),
        "recapture_detect": ("run_recapture_detect", m.RunRecaptureDetectRequest(body=m.RecaptureDetectReq(image=image_b64))),
    }


def test_official_sdk_calls_all_six_operations_with_aksk(service):
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

    enabled = httpx.get(service.base_url + "/ready").json()["engines"]
    client = sdk_client(service)
    mirrored = encode(np.ascontiguousarray(photo("astronaut")[:, ::-1]))  # not the gallery photo itself
    for api, (method, request) in sdk_operations(base64.b64encode(mirrored).decode()).items():
        if enabled[api]["enabled"]:
            response = getattr(client, method)(request)
            assert response.result is not None, api
        else:  # the honest answer of an endpoint with no engine yet
            with pytest.raises(ClientRequestException) as info:
                getattr(client, method)(request)
            assert (info.value.status_code, info.value.error_code) == (400, "AIS.0007")
            assert info.value.request_id
    ops = sdk_operations(base64.b64encode(mirrored).decode())
    result = client.run_celebrity_recognition(ops["celebrity_recognition"][1]).result
    assert [c.label for c in result] == ["Eileen Collins"]
    assert result[0].confidence > 0.9 and result[0].face_detail["w"] >= 40
    # The typed models the SDK built: string confidences, float boxes in V2, int boxes in media tagging.
    tags = client.run_image_tagging(ops["image_tagging"][1]).result.tags
    person = next(t for t in tags if t.i18n_tag.en == "person")
    assert person.type == "人类" and person.i18n_type.en == "Human" and isinstance(person.confidence, str)
    assert isinstance(person.instances[0].bounding_box.width, float) and len(tags) <= 5
    det = client.run_image_media_tagging_det(ops["media_tagging_det"][1]).result.tags
    assert all(isinstance(i.bounding_box.top_left_x, int) for t in det for i in t.instances)
    assert not hasattr(det[0], "i18n_type")  # the SDK model has no such field, and we send none
    media = client.run_image_media_tagging(ops["media_tagging"][1]).result.tags
    assert all(t.instances == [] for t in media) and any(t.tag == "person" for t in media)  # language=en
    mains = client.run_image_main_object_detection(ops["main_object_detection"][1]).result
    assert mains[0].label == "main_object_box" and float(mains[0].confidence) >= 30


def test_official_sdk_is_refused_with_a_wrong_secret_or_a_foreign_project(service):
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

    method, request = sdk_operations(base64.b64encode(encode(photo("coffee"))).decode())["celebrity_recognition"]
    with pytest.raises(ClientRequestException) as info:
        getattr(sdk_client(service, sk="not-the-secret"), method)(request)
    assert (info.value.status_code, info.value.error_code) == (401, "APIG.0301")
    with pytest.raises(ClientRequestException) as info:
        getattr(sdk_client(service, project=OTHER_PROJECT), method)(request)
    assert (info.value.status_code, info.value.error_code) == (401, "AIP.0003")


# ------------------------------------------------------------------------------------------ token flow
def test_reference_python_sample_unchanged_but_for_the_url(service, token, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "image-tagging.jpg").write_bytes(encode(photo("astronaut")))
    monkeypatch.chdir(tmp_path)
    printed = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: printed.append(" ".join(map(str, a))))
    sample = f'''
import requests
import base64

url = "{service.base_url}/v2/{PROJECT}/image/celebrity-recognition"
token = "{token}"
headers = {{'Content-Type': 'application/json', 'X-Auth-Token': token}}

imagepath = r'data/image-tagging.jpg'
with open(imagepath, "rb") as bin_data:
    image_data = bin_data.read()
image_base64 = base64.b64encode(image_data).decode("utf-8") # 使用图片的base64编码
data= {{"image": image_base64}} # url与image参数二选一

response = requests.post(url, headers=headers, json=data, verify=False)
print(response.text)
'''
    exec(compile(sample, "reference_sample.py", "exec"), {})
    result = json.loads(printed[-1])["result"]
    assert result[0]["label"] == "Eileen Collins" and result[0]["confidence"] >= 0.9


def test_token_errors(service, token):
    resp = requests.post(service.base_url + "/v3/auth/tokens", json=token_body(password="wrong"))
    assert resp.status_code == 401 and "X-Subject-Token" not in resp.headers
    resp = requests.post(service.base_url + "/v3/auth/tokens", json=token_body(project_name="someone-elses"))
    assert resp.status_code == 401
    path = f"/v2/{OTHER_PROJECT}/image/celebrity-recognition"
    assert_error(post(service, token, path, {"image": "aGVsbG8="}), "AIP.0003", 401)
    assert_error(post(service, token[:-4] + "AAAA", f"/v2/{PROJECT}/image/celebrity-recognition", {"image": "aGVsbG8="}),
                 "APIG.0301", 401)
    assert_error(httpx.post(service.base_url + f"/v2/{PROJECT}/image/tagging", json={"image": "aGVsbG8="}), "APIG.0301", 401)


def test_expired_tokens_are_refused():
    from imgrec.service.auth import Authenticator
    from imgrec.settings import Settings
    from imgrec.schemas.errors import ApiError

    settings = Settings(users=[{"domain": DOMAIN, "name": USER, "password": PASSWORD, "project_id": PROJECT,
                                "project_name": PROJECT_NAME}], auth={"token_ttl_seconds": -1})
    auth = Authenticator(settings)
    token, _ = auth.issue_token(token_body())
    with pytest.raises(ApiError) as info:
        auth.authenticate("POST", "/v1.0/image/tagging", [], {"x-auth-token": token}, b"{}")
    assert info.value.code == "APIG.0301" and token not in str(info.value)


# ------------------------------------------------------------------------------------------ error classes
CELEB = f"/v2/{PROJECT}/image/celebrity-recognition"


def test_request_level_errors(service, token):
    assert_error(post(service, token, CELEB, content=b"{not json", headers={"Content-Type": "application/json"}), "AIS.0014")
    assert_error(post(service, token, CELEB, content=b"[" * 5000 + b"]" * 5000), "AIS.0014")
    assert_error(post(service, token, CELEB, {}), "AIS.0011")
    assert_error(post(service, token, CELEB, {"image": "aGVsbG8=", "bogus": 1}), "AIS.0012")
    assert_error(post(service, token, CELEB, {"image": "aGVsbG8=", "url": "http://x.example/a.jpg"}), "AIS.0501")
    assert_error(post(service, token, CELEB, {"image": "!!!"}), "AIS.0015")
    assert_error(post(service, token, CELEB, {"image": base64.b64encode(b"plain text, not an image").decode()}), "AIS.0021")
    gif = encode(photo("coffee"), "GIF")
    assert_error(post(service, token, CELEB, {"image": base64.b64encode(gif).decode()}), "AIS.0502")
    jpeg = encode(photo("coffee"))
    assert_error(post(service, token, CELEB, {"image": base64.b64encode(jpeg[:3000]).decode()}), "AIS.0503")
    assert_error(post(service, token, CELEB, {"image": "QUFB" * (3 * 1024 * 1024)}), "APIG.0201", 413)
    assert_error(post(service, token, f"/v2/{PROJECT}/image/nothing", {}), "APIG.0101", 404)
    assert_error(httpx.get(service.base_url + CELEB), "AIS.0013", 405)
    # switched off in the test config: the honest "not enabled" answer
    assert_error(post(service, token, "/v1.0/image/tagging", {"image": base64.b64encode(jpeg).decode()}), "AIS.0007")


def test_url_inputs(service, token, file_server):
    def url_call(path):
        return post(service, token, CELEB, {"url": file_server.base_url + path, "threshold": 0.5})

    ok = url_call("/astronaut.jpg")
    assert ok.status_code == 200 and ok.json()["result"][0]["label"] == "Eileen Collins"
    assert_error(url_call("/missing.jpg"), "AIS.0029")
    assert_error(url_call("/empty.jpg"), "AIS.0025")
    assert_error(url_call("/forbidden"), "AIS.0024")
    assert_error(url_call("/redirect"), "AIS.0022")  # to a loopback port that is not on the allow-list
    assert_error(url_call("/slow"), "AIS.0029")
    assert_error(url_call("/endless"), "AIS.0023")
    for private in ("http://127.0.0.1:9/a.jpg", "http://10.0.0.1/a.jpg", "http://169.254.169.254/latest/meta-data",
                    "http://[::1]:8080/a.jpg", "http://localhost:1/a.jpg"):
        assert_error(post(service, token, CELEB, {"url": private}), "AIS.0022")


# ------------------------------------------------------------------------------------------ v1 image-out
def test_dark_enhance_json_and_multipart(service, token):
    dark = (photo("chelsea").astype(np.float32) * 0.15).astype(np.uint8)
    jpeg = encode(dark)
    resp = post(service, token, "/v1.0/vision/dark-enhance", {"image": base64.b64encode(jpeg).decode(), "brightness": 0.9})
    assert resp.status_code == 200
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(resp.json()["result"]))))
    assert out.shape == dark.shape and out.mean() > dark.mean() * 2
    resp = post(service, token, "/v1.0/vision/dark-enhance", files={"file": ("dark.jpg", jpeg, "image/jpeg")},
                data={"brightness": "0.3"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
    dimmer = np.asarray(Image.open(io.BytesIO(resp.content)))
    assert dark.mean() < dimmer.mean() < out.mean()


def test_defog_multipart_returns_the_file(service, token):
    clear = photo("coffee").astype(np.float32) / 255
    hazy = (clear * 0.5 + 0.5 * 0.9) * 255
    png = encode(hazy.astype(np.uint8), "PNG")
    resp = post(service, token, "/v1.0/vision/defog", files={"file": ("hazy.png", png, "image/png")},
                data={"gamma": "1.0", "natural_look": "false"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    out = np.asarray(Image.open(io.BytesIO(resp.content))).astype(np.float32) / 255
    assert np.abs(out - clear).mean() < np.abs(hazy / 255 - clear).mean()


def test_bgm_over_http(service, token, file_server, tmp_path):
    from tests.helpers import song, write_media

    clip = song(2, 20.0)[22050 * 5:22050 * 13] * 0.5
    write_media(clip, 22050, tmp_path / "clip.mp4")
    file_server.files["clip.mp4"] = (tmp_path / "clip.mp4").read_bytes()
    resp = post(service, token, "/v1.0/bgm/recognition", {"url": file_server.base_url + "/clip.mp4"})
    assert resp.status_code == 200 and resp.json() == {"result": {"audio_name": "Slow Orbit"}}
    file_server.files["photo.mp4"] = encode(photo("coffee"))
    assert_error(post(service, token, "/v1.0/bgm/recognition", {"url": file_server.base_url + "/photo.mp4"}), "AIS.0021")
    assert_error(post(service, token, "/v1.0/bgm/recognition", {"image": "aGVsbG8="}), "AIS.0012")


def test_metrics_and_request_ids_in_logs(service, token):
    resp = post(service, token, CELEB, {"image": "!!!"})
    request_id = resp.headers["X-Request-Id"]
    metrics = httpx.get(service.base_url + "/metrics").text
    assert 'imgrec_requests_total{api="celebrity_recognition",status="400"}' in metrics
    assert 'imgrec_errors_total{api="celebrity_recognition",code="AIS.0015"}' in metrics
    assert "imgrec_request_duration_seconds_bucket" in metrics
    assert f"[{request_id}]" in service.log_text()  # the refusal was logged with its request id


def test_super_resolution_json_and_multipart(service, token):
    small = photo("chelsea")[::6, ::6].copy()  # 50 x 76
    resp = post(service, token, "/v1.0/vision/super-resolution", {"image": base64.b64encode(encode(small, "PNG")).decode()})
    assert resp.status_code == 200
    out = Image.open(io.BytesIO(base64.b64decode(resp.json()["result"])))
    assert (out.format, out.size) == ("PNG", (small.shape[1] * 3, small.shape[0] * 3))
    resp = post(service, token, "/v1.0/vision/super-resolution", files={"file": ("s.jpg", encode(small), "image/jpeg")},
                data={"scale": "4", "model": "SRCNN"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(resp.content)).size == (small.shape[1] * 4, small.shape[0] * 4)
    webp = base64.b64encode(encode(small, "WEBP")).decode()
    assert_error(post(service, token, "/v1.0/vision/super-resolution", {"image": webp}), "AIS.0502")
    wide = base64.b64encode(encode(np.zeros((4, 2100, 3), np.uint8), "PNG")).decode()
    assert_error(post(service, token, "/v1.0/vision/super-resolution", {"image": wide}), "AIS.0504")


def test_analysis_passes_are_shared_within_one_project_only(tmp_path):
    """Two tagging APIs asked by one project about one image cost one analysis pass; the same image from
    another project gets its own pass (a reused pass answers faster, which must not tell one tenant what
    another just sent). The app on uvicorn in this process, so its analyser can be read; real signatures."""
    import threading
    import time

    import uvicorn

    from imgrec.connectors import signer
    from imgrec.service.app import create_app
    from imgrec.settings import Settings
    from tests.helpers import OTHER_AK, OTHER_SK, free_port, write_config

    app = create_app(Settings.load(write_config(tmp_path)))
    analyser = app.state.service.recognizer.registry.analyser
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{server.config.port}"
    body = json.dumps({"image": base64.b64encode(encode(photo("chelsea"))).decode()}).encode()

    def call(api_path, ak, sk, project):
        path = api_path.format(project=project)
        host = base.removeprefix("http://")
        headers = signer.sign("POST", path, {"Content-Type": "application/json", "Host": host}, body, ak, sk)
        resp = httpx.post(base + path, content=body, headers=headers, timeout=60)
        assert resp.status_code == 200, resp.text

    try:
        call("/v2/{project}/image/tagging", AK, SK, PROJECT)
        call("/v2/{project}/image/media-tagging-det", AK, SK, PROJECT)
        assert analyser.passes == 1
        call("/v2/{project}/image/tagging", OTHER_AK, OTHER_SK, OTHER_PROJECT)
        assert analyser.passes == 2
    finally:
        server.should_exit = True
        thread.join(10)
