"""What one pipeline run needs to know, in one picklable object passed to every task."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from imgrec import schemas
@dataclass
class Job:
    run_id: str
    flow: str
    source: str
    out: str
    apis: list[str]
    backend: str = "local"  # local | http
    endpoint: str | None = None  # http backend: self-hosted base URL (None = Huawei Cloud)
    mode: str = "inline"  # inline | url
    concurrency: int = 8
    rate_per_second: float = 0.0
    global_limit: str | None = None  # Prefect global concurrency limit shared by every worker
    task_runner: str = "threads"  # threads (in the flow's process) | dask (local cluster or dask_address)
    dask_address: str | None = None  # an existing Dask scheduler, e.g. tcp://scheduler:8786
    shard_size: int = 200
    prefix: str = ""
    modified_since: datetime | None = None
    modified_until: datetime | None = None
    force: bool = False
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    config: str | None = None  # settings file, re-read by each worker process
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def out_path(self) -> Path:
        return Path(self.out)

    @property
    def run_dir(self) -> Path:
        return self.out_path / "_runs" / self.run_id

    @property
    def run_date(self) -> str:
        return self.started_at.strftime("%Y-%m-%d")

    def resolved_params(self, api: str) -> dict[str, Any]:
        """The parameters as the service will apply them (defaults filled), validated up front."""
        spec = schemas.spec(api)
        placeholder = {"url": "https://example.com/x.jpg"} if spec.input == "url_only" else {"image": "eA=="}
        return spec.parse({**placeholder, **self.params.get(api, {})}).params

    def params_hash(self, api: str) -> str:
        text = json.dumps(self.resolved_params(api), sort_keys=True)
        return hashlib.sha256(f"{api}:{text}".encode()).hexdigest()[:16]

    def public_parameters(self) -> dict[str, Any]:
        """For the runs table and reports: everything but secrets (none live here) as JSON-able values."""
        data = asdict(self)
        for key in ("modified_since", "modified_until", "started_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data
