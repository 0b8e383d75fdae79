"""What one catalog run knows once resolved (`Job`): its parameters (schemas/run.py) plus its identity."""
from __future__ import annotations

import functools
import hashlib
import json
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import Field

from imgrec import schemas
from imgrec.connectors.output import Output, open_output
from imgrec.schemas import similar
from imgrec.schemas.run import RunParameters, is_bucket


class Job(RunParameters):
    """One resolved run, passed to every task: its parameters plus identity, every field final."""

    run_id: str
    flow: str
    started_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    answered_by: str = ""  # the in-process engines' build digest, or the HTTP service's address

    @classmethod
    def create(cls, flow: str, run_id: str, parameters: RunParameters, available_apis: list[str],
               config: str | None, answered_by: str = "") -> "Job":
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
        return cls(run_id=run_id, flow=flow, answered_by=answered_by, **data)

    @property
    def output(self) -> Output:
        return _output(self.out)

    @property
    def work_dir(self) -> Path:
        """Local working files of this run (the listing, downloaded ledger and table files): inside a folder
        output, under the temporary folder for a bucket output."""
        if self.dry_run:  # writes nothing to the output
            return Path(tempfile.gettempdir()) / "imgrec-dry-runs" / self.run_id
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

    @property
    def fingerprints(self) -> bool:
        """Whether this run fingerprints its images: asked for, and their bytes in hand (inline mode)."""
        return self.similar and self.mode == "inline"

    @property
    def work(self) -> list[str]:
        """What each planned image may need, in the ledger's names: the APIs, then its fingerprint."""
        return self.apis + ([similar.WORK] if self.fingerprints else [])

    def resolved_params(self, api: str) -> dict[str, Any]:
        """The request parameters as the service will apply them (defaults filled)."""
        return schemas.spec(api).resolve_params(self.params.get(api, {}))

    def params_hash(self, api: str) -> str:
        if api == similar.WORK:  # a new fingerprint model or version fingerprints every image again
            return hashlib.sha256(f"{api}:{similar.MODEL}:{similar.VERSION}".encode()).hexdigest()[:16]
        text = json.dumps(self.resolved_params(api), sort_keys=True)
        return hashlib.sha256(f"{api}:{text}".encode()).hexdigest()[:16]

    def answer_hash(self, api: str) -> str:
        """The key of an answer kept for reuse by byte-identical twins: the API's parameters and who answered
        (after an engine upgrade, an old build's answers are not handed out as the new one's)."""
        return hashlib.sha256(f"{self.params_hash(api)}:{self.answered_by}".encode()).hexdigest()[:16]

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
