"""Where the Image Recognition API and IAM live: Huawei Cloud regions, or any self-hosted base URL."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Endpoints:
    image: str  # base URL, scheme://host[:port], no trailing slash
    iam: str

    @classmethod
    def cloud(cls, region: str) -> "Endpoints":
        return cls(f"https://image.{region}.myhuaweicloud.com", f"https://iam.{region}.myhuaweicloud.com")

    @classmethod
    def self_hosted(cls, base_url: str, iam_url: str | None = None) -> "Endpoints":
        """The self-hosted service answers both the API and `/v3/auth/tokens` on one base URL.
        Like the official SDK, only scheme://host:port is used; a path prefix is dropped."""
        base = origin(base_url)
        return cls(base, origin(iam_url) if iam_url else base)

    def url(self, path: str) -> str:
        return self.image + path


def origin(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if not parts.hostname:
        raise ValueError(f"not a URL: {url!r}")
    return f"{parts.scheme}://{parts.netloc}"
