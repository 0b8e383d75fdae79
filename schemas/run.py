"""What a catalog run is asked to do: `RunParameters`, the one model for a run's options.

The flows take it as their parameter, the CLI builds it from its options, the settings file's `[pipeline]`
section is one, and `deployments/prefect.yaml` gives one per deployment. Fields a run leaves unset take the
`[pipeline]` values, then the defaults below. Part of the contract: the settings, the pipeline and the CLI
all read it, and it depends on nothing but the API specs.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import SPECS, CATALOG_APIS, spec
from .similar import THRESHOLD as SIMILAR_THRESHOLD
from .errors import ApiError


def is_bucket(location: str) -> bool:
    """An s3:// or obs:// location (else a folder)."""
    return location.startswith(("s3://", "obs://"))


BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
MIN_RATE = 0.01  # requests per second: one call every 100 s


class RunParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = ""  # a folder, s3://bucket/prefix or obs://bucket/prefix
    out: str = "warehouse"  # tables, ledger and reports: a folder, s3://bucket/prefix or obs://bucket/prefix
    # parquet: Hive-partitioned Parquet files; iceberg: Apache Iceberg tables registered in `iceberg_catalog`
    table_format: Literal["parquet", "iceberg"] = "parquet"
    # A SQLAlchemy URL (sqlite:///..., postgresql+psycopg2://...) or a REST catalog's http(s) URL. None: a
    # SQLite file under a folder output's _state (a bucket output needs one named: workers share it).
    iceberg_catalog: str | None = None
    apis: list[str] = []  # empty: every image API the backend has enabled
    backend: Literal["local", "http"] = "local"  # in-process engines, or an HTTP API (cloud / self-hosted)
    endpoint: str | None = None  # http backend: self-hosted base URL (None: Huawei Cloud, [client] region)
    mode: Literal["inline", "url"] = "inline"  # base64 in the body, or presigned URLs the service fetches
    concurrency: int = Field(8, ge=1, le=1024)  # requests in flight at once
    # 0 = unlimited; otherwise at least MIN_RATE (a slower rate would leave a run waiting for days)
    rate_per_second: float = Field(0.0, ge=0, le=1e6, allow_inf_nan=False)
    global_limit: str | None = None  # Prefect global concurrency limit: one rate across all workers
    shard_size: int = Field(200, ge=1)  # images per Prefect task
    params: dict[str, dict[str, Any]] = {}  # per-API request parameters: {image_tagging = {threshold = 30}}
    # Per API, what the tables keep: tags, boxes and faces below this confidence (0-100) are not written. The
    # wire keeps the reference's defaults (v1 tagging 0: every candidate, ~18 per photo, most wrong; media
    # tagging 40, with boxes 20), while a tag's confidence is the probability that it is right: the tagging
    # APIs' rows are floored at v2's default threshold, 60. {} keeps all an API answers.
    min_confidence: dict[str, float] = {"image_tagging_v1": 60.0, "media_tagging": 60.0, "media_tagging_det": 60.0}
    task_runner: Literal["threads", "dask"] = "threads"  # dask: shards on a Dask cluster
    dask_address: str | None = None  # an existing scheduler, e.g. tcp://scheduler:8786 (None: a local one)
    prefix: str = ""  # only keys under this prefix (joined to the source's own prefix)
    # Shell-style globs on the whole key (`*` also matches `/`): only keys matching one of `include` (when
    # given) and none of `exclude`
    include: list[str] = []
    exclude: list[str] = []
    sniff: bool = False  # also take objects without an image's extension whose first bytes are an image's
    # A file (or s3:// / obs:// object) naming the objects to take instead of listing: JSON Lines, CSV or text
    # of keys (as the tables record them) or s3:// / obs:// URIs of the source's bucket
    manifest: str | None = None
    # Fingerprint every new or changed image (inline mode) and find its near-duplicates in the whole catalog
    # so far: the embeddings and near_duplicates tables (schemas/similar.py)
    similar: bool = True
    similar_threshold: float = Field(SIMILAR_THRESHOLD, gt=0, le=1, allow_inf_nan=False)  # cosine, 0..1
    # An object with the same bytes as one already answered (this run or an earlier one) for the same API and
    # parameters is not sent again: its rows come from the twin's answer (the reused table; tasks/reuse.py)
    reuse: bool = True
    dry_run: bool = False  # list and plan, print the calls and the estimated cost; call nothing, write nothing
    modified_since: datetime | None = None  # only objects last modified at or after
    modified_until: datetime | None = None  # ... and before
    force: bool = False  # redo objects that already succeeded
    config: str | None = None  # the settings file; each worker process reads it again
    # What one call costs you (your Huawei bill's price, or a self-hosted node's cost per call): the estimated
    # cost of `runs`, the report and --dry-run. The reference gives no prices, so nothing is assumed: 0 until set.
    unit_price_per_call: float = Field(0.0, ge=0, allow_inf_nan=False)  # every API
    unit_prices: dict[str, float] = {}  # per API, over unit_price_per_call: {image_tagging = 0.0012}
    # The run fails (non-zero exit, Prefect flow run Failed) when more than this share of the images it
    # processed failed; 1.0: only when every one did. Invalid images (refused input) never count.
    max_failed_share: float = Field(0.5, ge=0, le=1, allow_inf_nan=False)

    @field_validator("source", "out")
    @classmethod
    def _location(cls, value: str) -> str:
        """A folder, or s3:// / obs:// naming a bucket (S3 and OBS bucket naming rules)."""
        if is_bucket(value):
            scheme, _, rest = value.partition("://")
            bucket = rest.partition("/")[0]
            if not BUCKET_NAME.fullmatch(bucket):
                raise ValueError(f"{value!r} names no valid bucket: use {scheme}://bucket/prefix (bucket names are "
                                 "3-63 lowercase letters, digits, dots and hyphens)")
        elif "://" in value:
            raise ValueError(f"{value!r}: unsupported scheme; use a folder, s3://bucket/prefix or obs://bucket/prefix")
        return value

    @field_validator("rate_per_second")
    @classmethod
    def _rate(cls, rate: float) -> float:
        if 0 < rate < MIN_RATE:
            raise ValueError(f"a rate below {MIN_RATE} requests per second would leave the run waiting for days; "
                             "use 0 for unlimited")
        return rate

    @field_validator("apis")
    @classmethod
    def _known_apis(cls, apis: list[str]) -> list[str]:
        for api in apis:
            if api not in CATALOG_APIS:
                why = "takes a video URL, not catalog images" if api in SPECS else "is not an API"
                raise ValueError(f"{api!r} {why}; catalog APIs: {', '.join(CATALOG_APIS)}")
        # Each API once (a repeated name would write its rows twice), in the reference's order: the tagging
        # APIs then come before main-object detection, which reuses their analysis pass.
        return [api for api in CATALOG_APIS if api in apis]

    @field_validator("min_confidence", "unit_prices")
    @classmethod
    def _per_api_numbers(cls, given: dict[str, float], info) -> dict[str, float]:
        """A confidence 0-100, or a price (finite, >= 0), for each named catalog API."""
        top = 100.0 if info.field_name == "min_confidence" else float("inf")
        for api, value in given.items():
            if api not in CATALOG_APIS:
                raise ValueError(f"{info.field_name} for {api!r}: catalog APIs are {', '.join(CATALOG_APIS)}")
            if not (0 <= value <= top and value < float("inf")):
                raise ValueError(f"{info.field_name} for {api}: " + (
                    "a confidence is 0-100" if top == 100 else "a price is a finite number >= 0"))
        return given

    def unit_price(self, api: str) -> float:
        return self.unit_prices.get(api, self.unit_price_per_call)

    @field_validator("params")
    @classmethod
    def _valid_params(cls, params: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for api, given in params.items():
            if api not in CATALOG_APIS:
                raise ValueError(f"params for {api!r}: catalog APIs are {', '.join(CATALOG_APIS)}")
            try:
                spec(api).resolve_params(given)
            except ApiError as err:
                names = ", ".join(p.name for p in spec(api).params)
                raise ValueError(f"params for {api}: {err} (its parameters: {names})") from None
        return params

    @field_validator("modified_since", "modified_until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)

    def over(self, defaults: "RunParameters") -> "RunParameters":
        """These parameters where set, `defaults` (the settings file's [pipeline]) elsewhere; request
        parameters merge per API."""
        update = {name: getattr(self, name) for name in self.model_fields_set}
        if "params" in update:
            update["params"] = {**defaults.params, **self.params}
        return defaults.model_copy(update=update)
