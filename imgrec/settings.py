"""The one settings object: a TOML file (`--config` or IMGREC_CONFIG) overlaid by environment variables.

Environment variables use the IMGREC_ prefix and `__` for nesting (IMGREC_PIPELINE__CONCURRENCY=8).
Huawei SDK variable names are honoured for the HTTP backend's credentials (HUAWEICLOUD_SDK_AK, ..._SK,
..._PROJECT_ID). Secrets are `SecretStr`: they print as '**********' in logs, reprs and reports.
"""
from __future__ import annotations

import os
from contextvars import ContextVar
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

MB = 1024 * 1024
_config_file: ContextVar[str | None] = ContextVar("imgrec_config_file", default=None)


class Credential(BaseModel):
    access_key: str
    secret_key: SecretStr
    project_id: str


class User(BaseModel):
    domain: str
    name: str
    password: SecretStr
    project_id: str
    project_name: str = ""


class AuthSettings(BaseModel):
    enabled: bool = True
    # Tokens are HMAC-signed and stateless so that every worker process accepts them; set a secret to keep
    # tokens valid across restarts (otherwise one is generated per `imgrec serve`).
    token_secret: SecretStr | None = None
    token_ttl_seconds: int = 24 * 3600
    max_clock_skew_seconds: int = 15 * 60


class CelebritySettings(BaseModel):
    gallery: Path | None = None  # one sub-folder per person, photos inside
    # dlib's descriptor distance at which two faces are the same person (0.6 in dlib's own evaluation).
    match_distance: float = 0.6


class BgmSettings(BaseModel):
    library: Path | None = None  # audio or mp4 files; the file stem is the returned audio_name


class UrlFetchSettings(BaseModel):
    # "host:port" or "host" entries. Loopback/private/link-local addresses are refused unless listed;
    # "*" admits any public host.
    allow: list[str] = []
    timeout_seconds: float = 15.0
    max_redirects: int = 3


class ServiceSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    # The reference: AK/SK and token requests carry bodies of at most 12 MB.
    max_body_bytes: int = 12 * MB
    engine_threads: int = 2  # engine calls run in a bounded thread pool
    rate_limit_per_second: float = 0.0  # gateway throttling (429 APIG.0308) per worker process; 0 = off


class SimulateSettings(BaseModel):
    """Latency simulation: no model work, the endpoint's empty result after `latency_ms` (+/- jitter)."""

    enabled: bool = False
    latency_ms: float = 100.0
    jitter_ms: float = 0.0


class FaultSettings(BaseModel):
    """Fault injection: shares of requests that fail in each way (see service/simulate.py)."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_slow: float = 0.0
    slow_seconds: float = 30.0
    rate_reset: float = 0.0
    rate_bad_json: float = 0.0
    seed: int | None = None

    @property
    def any(self) -> bool:
        return any((self.rate_429, self.rate_500, self.rate_slow, self.rate_reset, self.rate_bad_json))


class ClientSettings(BaseModel):
    """How the pipeline reaches a remote API (cloud or self-hosted)."""

    endpoint: str | None = None  # self-hosted base URL; None = Huawei Cloud in `region`
    region: str = "cn-north-4"
    access_key: str | None = Field(default=None, validation_alias=AliasChoices("access_key", "ak"))
    secret_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("secret_key", "sk"))
    project_id: str | None = None
    iam_domain: str | None = None
    iam_user: str | None = None
    iam_password: SecretStr | None = None
    iam_project_name: str | None = None
    timeout_seconds: float = 60.0
    retry_attempts: int = 5
    # "keepalive": our lean HTTP/1.1 transport (~9x less CPU per request); "httpx": httpx's own, for
    # anything the lean one leaves out (connectors/transport.py says what). A proxy implies "httpx".
    transport: Literal["keepalive", "httpx"] = "keepalive"
    proxy: SecretStr | None = None  # e.g. http://user:password@proxy:3128 (may hold a password)


class PipelineSettings(BaseModel):
    out: Path = Path("warehouse")
    apis: list[str] = []  # empty = every enabled image API
    backend: Literal["local", "http"] = "local"
    mode: Literal["inline", "url"] = "inline"
    concurrency: int = 8
    rate_per_second: float = 0.0  # 0 = unlimited
    global_limit: str | None = None  # Prefect global concurrency limit: one rate across all workers
    shard_size: int = 200
    unit_price_per_call: float = 0.0  # for the estimated-cost column of `runs`
    params: dict[str, dict[str, Any]] = {}  # per-API request parameters, e.g. {image_tagging = {threshold = 30}}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGREC_", env_nested_delimiter="__", extra="ignore")

    auth: AuthSettings = AuthSettings()
    credentials: list[Credential] = []
    users: list[User] = []
    celebrity: CelebritySettings = CelebritySettings()
    bgm: BgmSettings = BgmSettings()
    url_fetch: UrlFetchSettings = UrlFetchSettings()
    service: ServiceSettings = ServiceSettings()
    client: ClientSettings = ClientSettings()
    pipeline: PipelineSettings = PipelineSettings()
    engines: dict[str, dict[str, Any]] = {}  # per-engine options (enabled = false switches one off)
    models: dict[str, dict[str, Any]] = {}  # bring-your-own ONNX models: see imgrec/engines/plugins.py
    simulate: SimulateSettings = SimulateSettings()  # benchmarks and tests only: see service/simulate.py
    faults: FaultSettings = FaultSettings()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @classmethod
    def load(cls, config: str | Path | None = None, **overrides: Any) -> "Settings":
        """Settings from `config` (else the IMGREC_CONFIG file, if set), the environment and overrides."""
        token = _config_file.set(str(config) if config is not None else os.environ.get("IMGREC_CONFIG"))
        try:
            settings = cls(**overrides)
        finally:
            _config_file.reset(token)
        _apply_huawei_env(settings.client)
        return settings


class _TomlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _config_file.get()
        if not path:
            return {}
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"config file not found: {file}")
        data = tomllib.loads(file.read_text(encoding="utf-8"))
        base = file.parent
        # Relative folders in a config file are relative to that file, not to the working directory.
        for section, key in (("celebrity", "gallery"), ("bgm", "library")):
            value = data.get(section, {}).get(key)
            if value and not Path(value).is_absolute():
                data[section][key] = str((base / value).resolve())
        for model in data.get("models", {}).values():
            for key in ("path", "labels"):
                if model.get(key) and not Path(model[key]).is_absolute():
                    model[key] = str((base / model[key]).resolve())
        return data


def _apply_huawei_env(client: ClientSettings) -> None:
    """The names Huawei's SDKs read, for users who already have them set."""
    env = os.environ
    if not client.access_key and env.get("HUAWEICLOUD_SDK_AK"):
        client.access_key = env["HUAWEICLOUD_SDK_AK"]
    if not client.secret_key and env.get("HUAWEICLOUD_SDK_SK"):
        client.secret_key = SecretStr(env["HUAWEICLOUD_SDK_SK"])
    if not client.project_id and env.get("HUAWEICLOUD_SDK_PROJECT_ID"):
        client.project_id = env["HUAWEICLOUD_SDK_PROJECT_ID"]
