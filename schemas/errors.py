"""The error catalogue (the reference's section 7.2 and the project's own codes, each with its kind) and the
one exception type every layer raises.

Server, client and in-process backend all speak in these codes, so a pipeline row records the same
`error_code` whether the failure came from the cloud, the self-hosted service or the local engines.
"""
from __future__ import annotations

from dataclasses import dataclass

# What the outcome of a failed call means for the image and for the run:
INPUT = "input"  # the input itself: the same bytes fail the same way (the image is `invalid` for the API)
LIMIT = "limit"  # one API's limits (its formats, sides, sizes): that API's outcome, the image is not bad
PERMANENT = "permanent"  # will not heal by retrying: credentials, the project, an API not enabled
TRANSIENT = "transient"  # a serving-side condition (throttled, busy, a slow network): worth another attempt
UNREACHABLE = "unreachable"  # nothing answers at the endpoint (not listening, unknown host): worth another
FAILED = "failed"  # this call failed, not the input: not retried within the run, redone by the next one
KINDS = (INPUT, LIMIT, PERMANENT, TRANSIENT, UNREACHABLE, FAILED)


@dataclass(frozen=True)
class Code:
    status: int  # the HTTP status the service answers with (0: never on the wire, the client's own)
    message: str
    kind: str


# Every code the project answers or records. The reference's (section 7.2) carry its English texts byte for
# byte; the rest say whose they are.
CATALOGUE: dict[str, Code] = {
    "AIS.0002": Code(400, "The authentication token is abnormal.", PERMANENT),
    "AIS.0003": Code(400, "Failed to complete the request because of an internal service error.", TRANSIENT),
    "AIS.0004": Code(400, "The request is unauthorized.", PERMANENT),
    "AIS.0005": Code(400, "The service does not exist.", PERMANENT),
    "AIS.0007": Code(400, "The service has not been enabled yet.", PERMANENT),
    "AIS.0010": Code(400, "The header is missing or left empty.", FAILED),
    "AIS.0011": Code(400, "The request parameter is missing or left empty.", FAILED),
    "AIS.0012": Code(400, "The request parameter is not supported.", FAILED),
    "AIS.0013": Code(405, "The request method is not allowed.", FAILED),
    "AIS.0014": Code(400, "The JSON format of the input data is incorrect.", FAILED),
    "AIS.0015": Code(400, "Base64 decoding of the input data is incorrect.", INPUT),
    "AIS.0020": Code(400, "The size of the request body exceeds the upper limit.", LIMIT),
    "AIS.0021": Code(400, "The requested file type is not supported.", INPUT),
    "AIS.0022": Code(400, "The URL is invalid.", FAILED),
    "AIS.0023": Code(400, "The file stored on OBS is oversized.", LIMIT),
    "AIS.0024": Code(400, "Failed to obtain the file from OBS. The signature has expired or fails to pass the authentication.", FAILED),
    "AIS.0025": Code(400, "The file stored on OBS is empty.", INPUT),
    "AIS.0026": Code(400, "The token is not scoped to a project.", PERMANENT),  # not in the reference: ours, for IAM
    "AIS.0029": Code(400, "Failed to download the file from the Internet. Check whether the URL of the file is correct and supported.", FAILED),
    "AIS.0105": Code(400, "Recognize Failed", FAILED),
    "AIS.0201": Code(400, "An exception occurred during the process of obtaining the input image.", INPUT),
    "AIS.0202": Code(400, "The image format is not supported.", FAILED),
    "AIS.0203": Code(400, "The input parameter does not meet the requirements.", FAILED),
    "AIS.0204": Code(400, "The color depth is not supported.", INPUT),
    "AIS.0205": Code(400, "The resolution of the image exceeds the upper limit.", INPUT),
    "AIS.0206": Code(400, "Algorithm calculation failed.", FAILED),
    "AIS.0501": Code(400, "The input parameter is invalid.", FAILED),
    "AIS.0502": Code(400, "The image format is not supported.", LIMIT),
    "AIS.0503": Code(400, "The image is damaged.", INPUT),
    "AIS.0504": Code(400, "The image size does not meet requirements.", LIMIT),
    "AIS.0505": Code(400, "Failed to run the algorithm.", FAILED),
    "AIS.0506": Code(400, "An internal error occurred.", TRANSIENT),
    "APIG.0101": Code(404, "The API does not exist or has not been published.", PERMANENT),
    "APIG.0201": Code(413, "The request body is oversized.", FAILED),
    "APIG.0301": Code(401, "Incorrect IAM authentication information.", PERMANENT),
    "APIG.0308": Code(429, "The request is sent too fast and exceeds the default rate limit of the service.", TRANSIENT),
    "AIP.0003": Code(401, "The request is unauthorized.", PERMANENT),
    "AIP.0500": Code(500, "Failed to complete the request because of an internal service error.", TRANSIENT),
    # Identity (IAM) answers of the service's token endpoint, and the client's view of IAM.
    "IAM.0001": Code(400, "The request body is invalid.", INPUT),
    "IAM.0004": Code(401, "The username or password is wrong.", PERMANENT),
    "IAM.0031": Code(401, "The user has no access to the project.", PERMANENT),
    "IAM.NETWORK": Code(0, "IAM unreachable.", UNREACHABLE),
    # The client's own (never on the wire): the transport failed, or the answer broke the contract.
    "NET.CONNECTION": Code(0, "connection error.", UNREACHABLE),
    "NET.TIMEOUT": Code(0, "timeout error.", TRANSIENT),
    "CLIENT.BAD_RESPONSE": Code(0, "the response does not match the API contract.", FAILED),
    "CLIENT.DISCONNECT": Code(499, "The client closed the request.", FAILED),  # the service's log only
    # The pipeline's own, recorded in its error rows.
    "IMGREC.NAME_TOO_LONG": Code(0, "the key is too long for the output's file system: its result could not be "
                                    "stored.", INPUT),
    "IMGREC.NORMALIZE": Code(0, "the result could not be stored.", FAILED),
}


def kind_of(code: str, status: int = 400) -> str:
    """A code's kind; one outside the catalogue (another server's) by its HTTP status."""
    known = CATALOGUE.get(code)
    if known is not None:
        return known.kind
    if status in (401, 403):
        return PERMANENT
    return TRANSIENT if status == 429 or status >= 500 else FAILED


@dataclass
class ApiError(Exception):
    """A failure with the reference's code. `detail` is for logs and never carries secrets; `retry_after`:
    the server's Retry-After, seconds."""

    code: str
    status: int = 400
    message: str = ""
    detail: str = ""
    request_id: str = ""
    retryable: bool | None = None
    attempts: int = 1
    retry_after: float | None = None

    def __post_init__(self) -> None:
        if not self.message:
            self.message = CATALOGUE[self.code].message if self.code in CATALOGUE else ""
        if self.retryable is None:
            self.retryable = self.kind in (TRANSIENT, UNREACHABLE) or self.status == 429 or self.status >= 500
        super().__init__(f"{self.code}: {self.message}" + (f" ({self.detail})" if self.detail else ""))

    @property
    def kind(self) -> str:
        return kind_of(self.code, self.status)

    def to_wire(self) -> dict[str, str]:
        return {"error_code": self.code, "error_msg": self.message}

    @classmethod
    def of(cls, code: str, detail: str = "") -> "ApiError":
        """An error as this project's service answers it: status and message from the catalogue."""
        known = CATALOGUE[code]
        return cls(code=code, status=known.status, message=known.message, detail=detail)
