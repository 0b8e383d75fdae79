"""What a catalog run is asked to do (`RunParameters`) and what one run knows once resolved (`Job`).

`RunParameters` is the one model for a run's options: the flows take it as their parameter, the CLI builds
it from its options, the settings file's `[pipeline]` section is one, and `deployments/prefect.yaml` gives
one per deployment. Fields a run leaves unset take the `[pipeline]` values, then the defaults below.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from imgrec import schemas
from imgrec.connectors.output import Output, is_bucket, open_output
from imgrec.schemas.errors import ApiError


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
    task_runner: Literal["threads", "dask"] = "threads"  # dask: shards on a Dask cluster
    dask_address: str | None = None  # an existing scheduler, e.g. tcp://scheduler:8786 (None: a local one)
    prefix: str = ""  # only keys under this prefix (joined to the source's own prefix)
    modified_since: datetime | None = None  # only objects last modified at or after
    modified_until: datetime | None = None  # ... and before
    force: bool = False  # redo objects that already succeeded
    config: str | None = None  # the settings file; each worker process reads it again
    unit_price_per_call: float = Field(0.0, ge=0, allow_inf_nan=False)  # for the estimated-cost column of `runs`
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
            if api not in schemas.CATALOG_APIS:
                why = "takes a video URL, not catalog images" if api in schemas.SPECS else "is not an API"
                raise ValueError(f"{api!r} {why}; catalog APIs: {', '.join(schemas.CATALOG_APIS)}")
        # Each API once (a repeated name would write its rows twice), in the reference's order: the tagging
        # APIs then come before main-object detection, which reuses their analysis pass.
        return [api for api in schemas.CATALOG_APIS if api in apis]

    @field_validator("params")
    @classmethod
    def _valid_params(cls, params: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for api, given in params.items():
            if api not in schemas.CATALOG_APIS:
                raise ValueError(f"params for {api!r}: catalog APIs are {', '.join(schemas.CATALOG_APIS)}")
            try:
                schemas.spec(api).resolve_params(given)
            except ApiError as err:
                names = ", ".join(p.name for p in schemas.spec(api).params)
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


class Job(RunParameters):
    """One resolved run, passed to every task: its parameters plus identity, every field final."""

    run_id: str
    flow: str
    started_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @classmethod
    def create(cls, flow: str, run_id: str, parameters: RunParameters, available_apis: list[str],
               config: str | None) -> "Job":
        """`parameters` already merged over the settings' defaults; `available_apis` the backend's enabled
        image APIs, the default set when none are named."""
        if not parameters.source:
            raise ValueError("no source: give a folder, s3://bucket/prefix or obs://bucket/prefix")
        apis = parameters.apis or [api for api in available_apis if api in schemas.IMAGE_APIS]
        if not apis:
            raise ValueError("no APIs to run: none is enabled for this backend")
        data = parameters.model_dump()
        out = parameters.out.rstrip("/") if is_bucket(parameters.out) else str(Path(parameters.out).resolve())
        if parameters.table_format == "iceberg" and is_bucket(out) and not parameters.iceberg_catalog:
            raise ValueError("Iceberg tables in a bucket need a catalog every worker reaches: set iceberg_catalog "
                             "(postgresql+psycopg2://..., a REST catalog's URL, or a shared sqlite:/// path)")
        data.update(apis=apis, out=out, config=config)
        return cls(run_id=run_id, flow=flow, **data)

    @property
    def output(self) -> Output:
        return _output(self.out)

    @property
    def work_dir(self) -> Path:
        """Local working files of this run (the listing, downloaded ledger and table files): inside a folder
        output, under the temporary folder for a bucket output."""
        if self.output.local_root is not None:
            return self.output.local_root / "_runs" / self.run_id
        digest = hashlib.sha256(self.out.encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / "imgrec-runs" / digest / self.run_id

    @property
    def shards_prefix(self) -> str:
        """Where the shard manifests go in the output (a bucket output: every worker reads them)."""
        return f"_runs/{self.run_id}/shards"

    @property
    def run_date(self) -> str:
        return self.started_at.strftime("%Y-%m-%d")

    def resolved_params(self, api: str) -> dict[str, Any]:
        """The request parameters as the service will apply them (defaults filled)."""
        return schemas.spec(api).resolve_params(self.params.get(api, {}))

    def params_hash(self, api: str) -> str:
        text = json.dumps(self.resolved_params(api), sort_keys=True)
        return hashlib.sha256(f"{api}:{text}".encode()).hexdigest()[:16]

    def public_parameters(self) -> dict[str, Any]:
        """For the runs table and reports: every parameter as JSON values, a catalog URL's password masked."""
        public = self.model_dump(mode="json", exclude={"run_id", "flow", "started_at"})
        if public.get("iceberg_catalog"):
            public["iceberg_catalog"] = re.sub(r"(://[^/:@]*:)[^/@]+@", r"\1<redacted>@", public["iceberg_catalog"])
        return public


@functools.lru_cache(maxsize=16)
def _output(out: str) -> Output:
    """One output (and boto3 client) per process and output, whatever the number of shards."""
    return open_output(out)
