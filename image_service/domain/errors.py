"""Domain errors.

Every error the service answers with on purpose is one of these. Each carries the stable ``code``
clients branch on (a class default, refined per instance where one class covers several causes)
and the HTTP status it maps to; the web layer turns them into the one JSON error envelope.
Nothing here imports aiohttp or botocore.

The other exceptions are signals inside one module that never reach a client as they are:
``SettingsError`` (a bad setting stops the program), ``ImageRejected`` (imaging's verdict,
turned into ``UploadRejected`` by completion), ``ScannerUnavailable`` and ``PoisonJob`` (the
worker retries, or dead-letters), and the repository's private ``WriteRefused``. The client has
errors of its own (``image_service.client``): it installs without the server.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ServiceError(Exception):
    http_status: ClassVar[int] = 500
    code: str = "internal_error"
    # Seconds a client should wait before retrying, when waiting is the remedy.
    retry_after: int | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code is not None:
            self.code = code
        if retry_after is not None:
            self.retry_after = retry_after


class InvalidRequest(ServiceError):
    """Input that passed the schema but breaks a rule of the domain."""

    http_status = 422
    code = "validation_error"


class Unauthenticated(ServiceError):
    """No usable credentials: missing_token, invalid_token, token_expired."""

    http_status = 401
    code = "unauthenticated"


class Forbidden(ServiceError):
    http_status = 403
    code = "forbidden"


class QuotaExceeded(ServiceError):
    http_status = 403
    code = "quota_exceeded"


class ImageNotFound(ServiceError):
    # Also the answer for another user's image: existence is never revealed.
    http_status = 404
    code = "image_not_found"

    def __init__(self, image_id: str, *, variant: str | None = None) -> None:
        details = {"image_id": image_id}
        if variant is not None:
            details["variant"] = variant
        super().__init__(
            "No such image." if variant is None else "No such variant.", details=details
        )


class JobNotFound(ServiceError):
    # Also the answer for another user's job: existence is never revealed.
    http_status = 404
    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__("No such job.", details={"job_id": job_id})


class AlbumNotFound(ServiceError):
    # Also the answer for another user's album: existence is never revealed.
    http_status = 404
    code = "album_not_found"

    def __init__(self, album_id: str) -> None:
        super().__init__("No such album.", details={"album_id": album_id})


class AlbumGone(AlbumNotFound):
    """The album was deleted while images were being put in it."""


class Conflict(ServiceError):
    """The image's state does not allow the request: upload_missing, image_not_ready, ..."""

    http_status = 409
    code = "conflict"


class ObjectGone(Conflict):
    """An object the call meant to read or copy is not there (any more): a completion that
    lost a race to another (the client's and S3's event), or an object removed meanwhile.
    Not an outage: retrying reads the state that explains it."""

    code = "object_gone"

    def __init__(self, key: str) -> None:
        super().__init__("The object is not there (any more).", details={"key": key})


class UploadRejected(ServiceError):
    """What arrived in S3 is not an acceptable image; the object has been deleted."""

    http_status = 422
    code = "upload_rejected"


class Unstorable(InvalidRequest):
    """A backend refused the request's own values (DynamoDB's ValidationException): retrying
    cannot help, and nobody else's request is to blame or to suffer for it."""

    code = "unstorable_request"

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__("The request's values cannot be stored.", details={"backend": backend})
        self.backend = backend
        self.reason = reason


class BackendUnavailable(ServiceError):
    """S3 or DynamoDB could not be reached or failed on its side."""

    http_status = 503
    code = "backend_unavailable"
    retry_after = 1

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend} is unavailable; retry shortly.", details={"backend": backend})
        self.backend = backend
        self.reason = reason


class BackendTimeout(ServiceError):
    """A request ran past its deadline waiting on a backend."""

    http_status = 503
    code = "backend_timeout"
    retry_after = 2

    def __init__(self, backend: str | None, seconds: float) -> None:
        name = backend or "a backend"
        super().__init__(
            f"{name} did not answer within {seconds:g} s; retry shortly.",
            details={"backend": backend, "timeout_seconds": seconds},
        )


class RateLimited(ServiceError):
    """Too many upload URLs for one caller; ``Retry-After`` says when one is back."""

    http_status = 429
    code = "rate_limited"


class RenditionUrlRefused(ServiceError):
    """A rendition URL whose signature does not match what it names, or that has expired."""

    http_status = 403
    code = "invalid_signature"  # or "url_expired"

    def __init__(self, code: str) -> None:
        super().__init__("This rendition URL is not valid: ask for a new one.", code=code)


class RendersBusy(ServiceError):
    """Every render slot of this process is taken: retried in a moment, never queued."""

    http_status = 503
    code = "renders_busy"
    retry_after = 1

    def __init__(self) -> None:
        super().__init__("Too many renditions are being made; retry shortly.")


class TooManyWaits(ServiceError):
    """This process holds as many waiting requests (and event streams) as it may."""

    http_status = 503
    code = "too_many_waits"
    retry_after = 1

    def __init__(self, limit: int) -> None:
        super().__init__(
            "Too many requests are waiting here; retry shortly, or poll.",
            details={"max_held_waits": limit},
        )


class TooManyHeld(ServiceError):
    """One user holds as many of a bounded resource (waits and streams, renders, completions)
    as one user may in this process: the others' share is theirs. Retried in a moment."""

    http_status = 429
    retry_after = 1

    def __init__(self, code: str, resource: str, limit: int) -> None:
        super().__init__(
            f"You have {limit} {resource} under way here, as many as one user may; retry "
            "when one has finished.",
            code=code,
            details={"resource": resource, "per_user_limit": limit},
        )


class NotReady(ServiceError):
    """``/ready``: a backend the service needs is not answering."""

    http_status = 503
    code = "not_ready"
    retry_after = 1
