"""The one settings object: a TOML file (`--config` or IMGREC_CONFIG) overlaid by environment variables.

Environment variables use the IMGREC_ prefix and `__` for nesting (IMGREC_PIPELINE__CONCURRENCY=8).
Huawei SDK variable names are honoured for the HTTP backend's credentials (HUAWEICLOUD_SDK_AK, ..._SK,
..._PROJECT_ID). Secrets are `SecretStr`: they print as '**********' in logs, reprs and reports.

Every section is strict: a key the project does not know (a typo) fails at load with its name, instead of
being ignored. Paths in a config file are relative to that file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from .models.fetch import default_models_dir
from .schemas import SPECS
from .schemas.run import RunParameters

MB = 1024 * 1024
MIN_TOKEN_SECRET_BYTES = 32


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Credential(Section):
    access_key: str
    secret_key: SecretStr
    project_id: str


class User(Section):
    domain: str
    name: str
    password: SecretStr
    project_id: str
    project_name: str = ""


class AuthSettings(Section):
    enabled: bool = True
    # Tokens are HMAC-signed and stateless so that every worker process accepts them; set a secret (at least
    # 32 bytes) to keep tokens valid across restarts (otherwise `imgrec serve` generates one for its workers).
    token_secret: SecretStr | None = None
    token_ttl_seconds: int = 24 * 3600
    max_clock_skew_seconds: int = 15 * 60

    @field_validator("token_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value().encode()) < MIN_TOKEN_SECRET_BYTES:
            raise ValueError(f"token_secret must be at least {MIN_TOKEN_SECRET_BYTES} bytes (e.g. `openssl rand "
                             "-hex 32`), or left out to have one generated")
        return secret


class CelebritySettings(Section):
    gallery: Path | None = None  # one sub-folder per person, photos inside
    # dlib's descriptor distance at which two faces are the same person (0.6 in dlib's own evaluation).
    match_distance: float = 0.6


class BgmSettings(Section):
    library: Path | None = None  # audio or mp4 files; the file stem is the returned audio_name


class UrlFetchSettings(Section):
    # "host:port" or "host" entries. Loopback/private/link-local addresses are refused unless listed;
    # "*" admits any public host.
    allow: list[str] = []
    timeout_seconds: float = 15.0
    max_redirects: int = 3


class ServiceSettings(Section):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    # The reference: AK/SK and token requests carry bodies of at most 12 MB.
    max_body_bytes: int = 12 * MB
    engine_threads: int = 2  # engine calls run in a bounded thread pool
    rate_limit_per_second: float = 0.0  # gateway throttling (429 APIG.0308) per worker process; 0 = off
    # /metrics and /ready answer anyone by default (scrapers, load balancers); false: credentials required
    public_metrics: bool = True
    # Connection limits (imgrec/service/protocol.py): a request line and headers of at most this many bytes
    # (431), complete within this many seconds, a body that never pauses longer; connections per worker (503).
    max_header_bytes: int = 64 * 1024
    header_timeout_seconds: float = 10.0
    body_idle_timeout_seconds: float = 30.0
    max_connections: int = 1000
    # Requests of one worker holding a body or waiting for an engine at once; more get 429 APIG.0308 before
    # their body is read (bounds the memory bodies and queued images take: ~20 MB each at most).
    max_active_requests: int = Field(64, ge=1)
    # Fair shares between projects: one project may hold at most this many of those slots (the rest stay
    # free for other projects) and at most this many URL fetches at once; past either, that project gets 429.
    # Unset, where more than one project is configured: all but an eighth of the slots (56 of 64), and a
    # quarter (16) for URL fetches; with one project, or auth off, no separate limit (nobody to keep room for).
    max_active_per_project: int | None = Field(None, ge=1)
    max_url_fetches_per_project: int | None = Field(None, ge=1)


class ConsoleSettings(Section):
    # GET /console: a try-it page (sign in with a configured IAM user, call any API from the browser)
    enabled: bool = False


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"  # json: one object per line, with the request id


class SimulateSettings(Section):
    """Latency simulation: no model work, the endpoint's empty result after `latency_ms` (+/- jitter)."""

    enabled: bool = False
    latency_ms: float = 100.0
    jitter_ms: float = 0.0


class FaultSettings(Section):
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


class ClientSettings(Section):
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


class EngineOptions(Section):
    enabled: bool = True  # false: the API answers AIS.0007 (service not enabled)


class ClassifierModel(Section):
    """A bring-your-own ONNX classifier (imgrec/engines/plugins.py)."""

    path: Path  # input (1, 3, S, S) RGB; output (1, C) logits or probabilities
    labels: Path  # CSV: en,zh,category
    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # on 0-1 RGB; ImageNet's by default
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    kind: Literal["object", "scene", "concept"] = "object"  # how its tags count in V1 tagging
    top_k: int = 5


class DetectorModel(Section):
    """A bring-your-own ONNX YOLOv5/YOLOv8-style detector (imgrec/engines/plugins.py)."""

    path: Path  # input (1, 3, S, S) RGB 0-1 letterboxed; output (1, N, 5 + C) or (1, 4 + C, N)
    labels: Path
    input_size: int = 640
    min_score: float = 0.2


class ModelSettings(Section):
    classifier: ClassifierModel | None = None
    detector: DetectorModel | None = None


ApiName = Literal[tuple(SPECS)]  # type: ignore[valid-type]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGREC_", env_nested_delimiter="__", extra="forbid")

    auth: AuthSettings = AuthSettings()
    credentials: list[Credential] = []
    users: list[User] = []
    celebrity: CelebritySettings = CelebritySettings()
    bgm: BgmSettings = BgmSettings()
    url_fetch: UrlFetchSettings = UrlFetchSettings()
    service: ServiceSettings = ServiceSettings()
    console: ConsoleSettings = ConsoleSettings()
    log: LogSettings = LogSettings()
    client: ClientSettings = ClientSettings()
    pipeline: RunParameters = RunParameters()  # defaults for every run; a run's own parameters win
    engines: dict[ApiName, EngineOptions] = {}  # e.g. [engines.celebrity_recognition] enabled = false
    models: ModelSettings = ModelSettings()  # bring-your-own ONNX models
    models_dir: Path = Field(default_factory=default_models_dir)  # the converted built-in models
    # Where `imgrec server` records the local Prefect server it keeps running (IMGREC_STATE_DIR)
    state_dir: Path = Field(default_factory=lambda: Path(os.environ.get("XDG_STATE_HOME") or
                                                         Path.home() / ".local" / "state") / "imgrec")
    simulate: SimulateSettings = SimulateSettings()  # benchmarks and tests only: see service/simulate.py
    faults: FaultSettings = FaultSettings()
    config_file: Path | None = Field(default=None, exclude=True)  # where the file part came from

    def engine(self, api: str) -> EngineOptions:
        return self.engines.get(api) or EngineOptions()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        path = init_settings.init_kwargs.get("config_file")
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        return sources + ((_TomlFile(settings_cls, Path(path)),) if path else ())

    @classmethod
    def load(cls, config: str | Path | None = None, **overrides: Any) -> "Settings":
        """Settings from `config` (else the IMGREC_CONFIG file, if set), the environment and overrides."""
        path = config if config is not None else os.environ.get("IMGREC_CONFIG")
        if path:
            path = Path(path).resolve()
            if not path.is_file():
                raise FileNotFoundError(f"config file not found: {path}")
        settings = cls(**overrides, config_file=path or None)
        _apply_huawei_env(settings.client)
        return settings


class _TomlFile(TomlConfigSettingsSource):
    """pydantic-settings' TOML source, with relative paths made relative to the file, not the cwd."""

    def __init__(self, settings_cls, path: Path):
        self._base = path.parent
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        data = super()._read_file(file_path)
        base = self._base

        def resolve(section: dict, key: str) -> None:
            value = section.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                section[key] = str((base / value).resolve())

        for section, key in (("celebrity", "gallery"), ("bgm", "library")):
            if isinstance(data.get(section), dict):
                resolve(data[section], key)
        for model in (data.get("models") or {}).values():
            if isinstance(model, dict):
                resolve(model, "path")
                resolve(model, "labels")
        resolve(data, "models_dir")
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
