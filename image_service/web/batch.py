"""``POST /images/batch`` and ``GET /jobs/{job_id}``: bulk operations (``domain/batch.py``), a
result per image within the call for up to 100 ids, a job with progress beyond."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from image_service.domain.batch import MAX_IDS, MAX_INLINE, OPS, BatchJob, BatchRequest
from image_service.web.encoding import json_text
from image_service.web.fields import IMAGE_ID, StrictSchema, UtcTimestamp, tag_field, tags_field
from image_service.web.handlers import NO_STORE, owner_param
from image_service.web.keys import BATCH, PRINCIPAL
from image_service.web.openapi import (
    BEARER,
    docs,
    idempotency_key_header,
    json_schema,
    querystring_schema,
    response_schema,
)
from image_service.web.schemas import FocalSchema, OwnerQuerySchema

JOB = "/jobs/{job_id:[0-9a-f]{16}}"
_docs = {"tags": ["images"], "security": [{BEARER: []}]}


class BatchRequestSchema(StrictSchema):
    op = fields.String(
        required=True,
        validate=validate.OneOf(OPS),
        metadata={
            "description": "tag and untag (with tags), delete (with permanent), restore, "
            "set_focal (with focal: a point, or null to clear it). delete and restore need an "
            "API key's images:delete scope."
        },
    )
    image_ids = fields.List(
        fields.String(validate=IMAGE_ID),
        validate=validate.Length(min=1, max=MAX_IDS),
        metadata={
            "description": f"Your images, each once: up to {MAX_INLINE} are done within the "
            f"call, up to {MAX_IDS} become a job."
        },
    )
    tag = tag_field(
        metadata={
            "description": "Every image of yours with this tag (the trash's, for restore), "
            "as a job. Instead of image_ids."
        }
    )
    tags = tags_field("What tag adds, or untag removes.")
    focal = fields.Nested(
        FocalSchema,
        allow_none=True,
        metadata={"description": "set_focal's point; null clears it."},
    )
    permanent = fields.Boolean(
        metadata={"description": "delete: for good, not into the trash."},
    )

    @validates_schema
    def _focal_with_set_focal(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("op") == "set_focal") != ("focal" in data):
            raise ValidationError("focal goes with set_focal, and set_focal needs it.", "focal")


class BatchResultSchema(Schema):
    image_id = fields.String(required=True)
    result = fields.String(
        required=True,
        metadata={
            "description": "ok, or the error code that image's own call answers "
            "(image_not_found, not_in_trash, too_many_tags...)."
        },
    )


class BatchAnswerSchema(Schema):
    results = fields.List(fields.Nested(BatchResultSchema), required=True)
    succeeded = fields.Integer(required=True)
    failed = fields.Integer(required=True)


class JobSchema(Schema):
    job_id = fields.String(required=True)
    op = fields.String(required=True)
    state = fields.String(
        required=True, metadata={"description": "queued, running (a worker has it) or done."}
    )
    total = fields.Integer(
        allow_none=True,
        metadata={"description": "Images to do; for a tag, known once the job is done."},
    )
    processed = fields.Integer(required=True)
    succeeded = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    errors = fields.List(
        fields.Nested(BatchResultSchema),
        required=True,
        metadata={"description": "The first 100 failures."},
    )
    created_at = UtcTimestamp(required=True)
    updated_at = UtcTimestamp(required=True)
    finished_at = UtcTimestamp(allow_none=True)
    url = fields.String(required=True, metadata={"description": "Where its progress is."})


def _results(pairs: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"image_id": image_id, "result": result} for image_id, result in pairs]


def _job(request: web.Request, job: BatchJob) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "op": job.request.op,
        "state": job.state,
        "total": job.total,
        "processed": job.processed,
        "succeeded": job.succeeded,
        "failed": job.failed,
        "errors": _results(job.results),
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
        "url": f"{request.url.origin()}/jobs/{job.job_id}",
    }


_answer = BatchAnswerSchema()
_job_schema = JobSchema()


@docs(
    summary="Tag, untag, delete, restore or set the focal point of many images",
    description=f"Each image is changed as its own call would change it, with a result for "
    f"each. Up to {MAX_INLINE} image_ids: done within the call (200). More, or a tag: a job "
    f"(202, Location: /jobs/{{job_id}}), at most 5 queued or running per user. With an "
    "Idempotency-Key, a retry with the same body answers the same (the same results, or the "
    "same job); another body with that key is 422.",
    parameters=[idempotency_key_header("Retries with the same key and body answer the same.")],
    **_docs,
)
@querystring_schema(OwnerQuerySchema)
@json_schema(BatchRequestSchema)
@response_schema(BatchAnswerSchema, 200, description="Done: a result for each image.")
@response_schema(JobSchema, 202, description="A job: its progress is at its url.")
async def run_batch(request: web.Request) -> web.Response:
    body = request["json"]
    job = await request.app[BATCH].submit(
        request[PRINCIPAL],
        owner_param(request),
        BatchRequest(
            op=body["op"],
            image_ids=tuple(body.get("image_ids", ())),
            tag=body.get("tag"),
            tags=tuple(body.get("tags", ())),
            focal=body.get("focal"),
            permanent=body.get("permanent", False),
        ),
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    if job.inline:
        answer = {
            "results": _results(job.results),
            "succeeded": job.succeeded,
            "failed": job.failed,
        }
        return web.json_response(_answer.dump(answer), dumps=json_text, headers=NO_STORE)
    view = _job(request, job)
    return web.json_response(
        _job_schema.dump(view),
        status=202,
        dumps=json_text,
        headers={**NO_STORE, "Location": f"/jobs/{job.job_id}"},
    )


@docs(summary="A bulk job's progress", **_docs)
@querystring_schema(OwnerQuerySchema)
@response_schema(JobSchema, 200)
async def get_job(request: web.Request) -> web.Response:
    job = await request.app[BATCH].job(
        request[PRINCIPAL], owner_param(request), request.match_info["job_id"]
    )
    return web.json_response(
        _job_schema.dump(_job(request, job)), dumps=json_text, headers=NO_STORE
    )
