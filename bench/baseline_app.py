"""The baseline: the original design, written minimally as it describes itself.

FastAPI with module-level synchronous boto3 clients (the original README's service): an upload
URL is botocore's `generate_presigned_url` for `put_object` with the content type and a 300 s
expiry, then a `put_item` of the metadata; the list is a `query` by user; a download is a
`get_item` and a presigned GET. No authentication, no checks: it is the floor to measure
against, not a service. Configured by BASELINE_BUCKET and BASELINE_TABLE and the AWS variables.

    uvicorn bench.baseline_app:app --port 8090
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

BUCKET = os.environ["BASELINE_BUCKET"]
TABLE = os.environ["BASELINE_TABLE"]

s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
dynamodb = boto3.client("dynamodb")
app = FastAPI()


class UploadRequest(BaseModel):
    user_id: str
    content_type: str
    tags: list[str] = []
    description: str = ""


@app.post("/images/upload")
def upload_url(request: UploadRequest) -> dict[str, str]:
    image_id = str(uuid.uuid4())
    key = f"images/{image_id}"
    url = s3.generate_presigned_url(
        "put_object",
        Params={"Bucket": BUCKET, "Key": key, "ContentType": request.content_type},
        ExpiresIn=300,
    )
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            "user_id": {"S": request.user_id},
            "image_id": {"S": image_id},
            "s3_key": {"S": key},
            "content_type": {"S": request.content_type},
            "upload_time": {"S": datetime.now(UTC).isoformat()},
            "tags": {"L": [{"S": tag} for tag in request.tags]},
            "description": {"S": request.description},
        },
    )
    return {"image_id": image_id, "upload_url": url}


@app.get("/images")
def list_images(user_id: str, limit: int = 20) -> dict[str, Any]:
    response = dynamodb.query(
        TableName=TABLE,
        KeyConditionExpression="user_id = :user",
        ExpressionAttributeValues={":user": {"S": user_id}},
        Limit=limit,
    )
    return {"items": response["Items"]}


@app.get("/images/{image_id}")
def get_image(image_id: str, user_id: str) -> dict[str, Any]:
    item = dynamodb.get_item(
        TableName=TABLE, Key={"user_id": {"S": user_id}, "image_id": {"S": image_id}}
    ).get("Item")
    if item is None:
        raise HTTPException(status_code=404)
    return item


@app.get("/images/{image_id}/download")
def download(image_id: str, user_id: str) -> dict[str, str]:
    item = get_image(image_id, user_id)
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": item["s3_key"]["S"]}, ExpiresIn=300
    )
    return {"download_url": url}
