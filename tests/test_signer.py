"""The AK/SK signer against vectors produced by the official SDK's own Signer, and the verifier."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from imgrec.connectors import signer

AK, SK = "HPUAXXXXXXXXXXXXXXXX", "a-secret-key/with+chars=="
DATE = "20261126T101459Z"
NOW = datetime(2026, 11, 26, 10, 14, 59, tzinfo=timezone.utc)

CASES = [
    ("POST", "/v2/0123abcd/image/tagging", [], {"Content-Type": "application/json;charset=UTF-8"},
     b'{"image": "abc", "threshold": 60.0}'),
    ("POST", "/v1.0/vision/super-resolution", [], {"Content-Type": "application/json"}, b'{"scale": 3}'),
    ("GET", "/v3/projects", [("name", "cn-north-4"), ("enabled", "true")], {}, b""),
    ("POST", "/v2/p/image/tag ging/ü", [("a", "x y"), ("b", "~!*")], {"Content-Type": "application/json"}, b"{}"),
    ("POST", "/v1.0/vision/defog", [], {"Content-Type": "multipart/form-data; boundary=xyz"}, b"--xyz--"),
]


def sdk_authorization(method, path, query, headers, body) -> tuple[str, dict]:
    request = SdkRequest(method=method, schema="https", host="image.cn-north-4.myhuaweicloud.com",
                         resource_path=path, query_params=list(query),
                         header_params={**headers, "User-Agent": "huaweicloud-usdk-python/3.0",
                                        "X-Project-Id": "0123abcd", "X-Sdk-Date": DATE}, body=body)
    signed = Signer(BasicCredentials(AK, SK, "0123abcd")).sign(request)
    return signed.header_params["Authorization"], dict(signed.header_params)


@pytest.mark.parametrize("method,path,query,headers,body", CASES)
def test_signature_is_byte_identical_to_the_official_sdk(method, path, query, headers, body):
    expected, _ = sdk_authorization(method, path, query, headers, body)
    ours = signer.sign(method, path, {**headers, "User-Agent": "huaweicloud-usdk-python/3.0",
                                      "X-Project-Id": "0123abcd", "X-Sdk-Date": DATE,
                                      "Host": "image.cn-north-4.myhuaweicloud.com"},
                       body, AK, SK, query=query)
    assert ours["Authorization"] == expected


@pytest.mark.parametrize("method,path,query,headers,body", CASES)
def test_verifier_accepts_what_the_sdk_signs(method, path, query, headers, body):
    authorization, sent = sdk_authorization(method, path, query, headers, body)
    parsed = signer.parse_authorization(authorization)
    assert parsed.access_key == AK
    signer.verify(method, path, query, sent, body, SK, parsed, now=NOW)


def _signed(body=b'{"image": "abc"}', path="/v2/p/image/tagging", date=DATE):
    headers = {"Content-Type": "application/json", "Host": "127.0.0.1:8080", "X-Sdk-Date": date}
    return signer.sign("POST", path, headers, body, AK, SK)


def test_credential_form_of_the_reference_is_accepted():
    headers = _signed()
    headers["Authorization"] = headers["Authorization"].replace(f"Access={AK}", f"Credential={AK}/20261126//image/sdk_request")
    signer.verify("POST", "/v2/p/image/tagging", [], headers, b'{"image": "abc"}', SK,
                  signer.parse_authorization(headers["Authorization"]), now=NOW)


@pytest.mark.parametrize("tamper", ["body", "path", "header", "secret", "skew", "replayed_old_date", "unsigned_date"])
def test_tampered_requests_are_refused(tamper):
    body, path, headers, secret, now = b'{"image": "abc"}', "/v2/p/image/tagging", _signed(), SK, NOW
    if tamper == "body":
        body = b'{"image": "abd"}'
    elif tamper == "path":
        path = "/v2/other/image/tagging"
    elif tamper == "header":
        headers["Host"] = "evil.example:8080"
    elif tamper == "secret":
        secret = "wrong"
    elif tamper == "skew":
        now = NOW + timedelta(minutes=16)
    elif tamper == "replayed_old_date":
        headers = _signed(date="20261125T101459Z")
    elif tamper == "unsigned_date":
        headers["Authorization"] = headers["Authorization"].replace("x-sdk-date", "x-other")
    with pytest.raises(signer.SignatureError):
        signer.verify("POST", path, [], headers, body, secret, signer.parse_authorization(headers["Authorization"]),
                      now=now)


def test_date_within_fifteen_minutes_is_accepted():
    headers = _signed()
    signer.verify("POST", "/v2/p/image/tagging", [], headers, b'{"image": "abc"}', SK,
                  signer.parse_authorization(headers["Authorization"]), now=NOW + timedelta(minutes=14))


@pytest.mark.parametrize("value", ["", "Basic abc", "SDK-HMAC-SHA256 Access=AK", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=zz"])
def test_malformed_authorization_headers(value):
    with pytest.raises(signer.SignatureError):
        signer.parse_authorization(value)
