"""The reference's error catalogue (section 7.2) and the one exception type every layer raises.

Server, client and in-process backend all speak in these codes, so a pipeline row records the same
`error_code` whether the failure came from the cloud, the self-hosted service or the local engines.
"""
from __future__ import annotations

from dataclasses import dataclass

# code -> (HTTP status, message). Messages are the reference's English texts, byte for byte.
CATALOGUE: dict[str, tuple[int, str]] = {
    "AIS.0002": (400, "The authentication token is abnormal."),
    "AIS.0003": (400, "Failed to complete the request because of an internal service error."),
    "AIS.0004": (400, "The request is unauthorized."),
    "AIS.0005": (400, "The service does not exist."),
    "AIS.0007": (400, "The service has not been enabled yet."),
    "AIS.0010": (400, "The header is missing or left empty."),
    "AIS.0011": (400, "The request parameter is missing or left empty."),
    "AIS.0012": (400, "The request parameter is not supported."),
    "AIS.0013": (405, "The request method is not allowed."),
    "AIS.0014": (400, "The JSON format of the input data is incorrect."),
    "AIS.0015": (400, "Base64 decoding of the input data is incorrect."),
    "AIS.0020": (400, "The size of the request body exceeds the upper limit."),
    "AIS.0021": (400, "The requested file type is not supported."),
    "AIS.0022": (400, "The URL is invalid."),
    "AIS.0023": (400, "The file stored on OBS is oversized."),
    "AIS.0024": (400, "Failed to obtain the file from OBS. The signature has expired or fails to pass the authentication."),
    "AIS.0025": (400, "The file stored on OBS is empty."),
    "AIS.0026": (400, "The token is not scoped to a project."),  # not in the reference: ours, for IAM
    "AIS.0029": (400, "Failed to download the file from the Internet. Check whether the URL of the file is correct and supported."),
    "AIS.0105": (400, "Recognize Failed"),
    "AIS.0201": (400, "An exception occurred during the process of obtaining the input image."),
    "AIS.0202": (400, "The image format is not supported."),
    "AIS.0203": (400, "The input parameter does not meet the requirements."),
    "AIS.0204": (400, "The color depth is not supported."),
    "AIS.0205": (400, "The resolution of the image exceeds the upper limit."),
    "AIS.0206": (400, "Algorithm calculation failed."),
    "AIS.0501": (400, "The input parameter is invalid."),
    "AIS.0502": (400, "The image format is not supported."),
    "AIS.0503": (400, "The image is damaged."),
    "AIS.0504": (400, "The image size does not meet requirements."),
    "AIS.0505": (400, "Failed to run the algorithm."),
    "AIS.0506": (400, "An internal error occurred."),
    # Gateway codes. The reference lists 400 for all; a real API gateway answers 404 for an unknown
    # API, 401 for failed authentication and 429 for throttling, and clients key retries on those.
    "APIG.0101": (404, "The API does not exist or has not been published."),
    "APIG.0201": (413, "The request body is oversized."),
    "APIG.0301": (401, "Incorrect IAM authentication information."),
    "APIG.0308": (429, "The request is sent too fast and exceeds the default rate limit of the service."),
    "AIP.0003": (401, "The request is unauthorized."),
    "AIP.0500": (500, "Failed to complete the request because of an internal service error."),
}

# Codes that describe a transient condition on the serving side: worth another attempt.
RETRYABLE_CODES = frozenset({"APIG.0308", "AIS.0003", "AIS.0506", "AIP.0500"})


@dataclass
class ApiError(Exception):
    """A failure with the reference's code. `detail` is for logs and never carries secrets."""

    code: str
    status: int = 400
    message: str = ""
    detail: str = ""
    request_id: str = ""
    retryable: bool | None = None
    attempts: int = 1

    def __post_init__(self) -> None:
        if not self.message:
            self.message = CATALOGUE.get(self.code, (0, ""))[1]
        if self.retryable is None:
            self.retryable = self.status == 429 or self.status >= 500 or self.code in RETRYABLE_CODES
        super().__init__(f"{self.code}: {self.message}" + (f" ({self.detail})" if self.detail else ""))

    def to_wire(self) -> dict[str, str]:
        return {"error_code": self.code, "error_msg": self.message}

    @classmethod
    def of(cls, code: str, detail: str = "") -> "ApiError":
        """An error as this project's service answers it: status and message from the catalogue."""
        status, message = CATALOGUE.get(code, (400, ""))
        return cls(code=code, status=status, message=message, detail=detail)
