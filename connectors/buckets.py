"""Where an s3:// or obs:// location lives (bucket, prefix, region, endpoint) and a boto3 client for it.

Endpoints and keys come from boto3's standard configuration (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, profiles); `obs://` defaults to the OBS endpoint of the configured region. Shared by the
sources (connectors/source.py), the output (connectors/output.py) and the table formats' bucket readers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketAddress:
    """Where `s3://bucket/prefix` or `obs://bucket/prefix` lives, from boto3's standard environment."""
    bucket: str
    prefix: str
    region: str
    endpoint: str | None  # AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else the region's OBS for obs://, else AWS's
    virtual: bool  # OBS wants virtual-host addressing


def bucket_address(uri: str, region: str | None = None) -> BucketAddress:
    scheme, _, rest = uri.partition("://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket: use {scheme}://bucket/prefix")
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "cn-north-4"
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if scheme == "obs" and not endpoint:
        endpoint = f"https://obs.{region}.myhuaweicloud.com"
    return BucketAddress(bucket, prefix, region, endpoint, scheme == "obs")


def bucket_client(uri: str, region: str | None = None):
    """(boto3 S3 client, bucket, prefix) for `s3://bucket/prefix` or `obs://bucket/prefix`: boto3's standard
    credential chain; the endpoint as bucket_address finds it."""
    import boto3
    from botocore.config import Config

    where = bucket_address(uri, region)
    config = Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"},
                    s3={"addressing_style": "virtual" if where.virtual else ("path" if where.endpoint else "auto")},
                    max_pool_connections=32)
    client = boto3.client("s3", endpoint_url=where.endpoint, region_name=where.region, config=config)
    return client, where.bucket, where.prefix
