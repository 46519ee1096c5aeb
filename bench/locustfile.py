"""The lifecycle `image-service loadtest` drives, for Locust: ask for an upload URL, PUT the bytes
straight to S3, complete, wait until processed, list, fetch a download, delete.

Each Locust user is one user of the service, with a token minted from the service's key:

    IMAGE_SERVICE_JWT_SECRET=... .venv/bin/locust -f bench/locustfile.py \\
        --host http://127.0.0.1:8080 --users 16 --spawn-rate 4 --run-time 60s --headless

(without `--headless`, Locust's own web page at http://127.0.0.1:8089 shows the charts). The
requests to S3 are named `S3 PUT` and `S3 GET`, and the wait for processing `wait for ready`, so
each step has its own line in Locust's statistics. Like `loadtest`, every user is a user of its
own: give the service a per-user limit above what one Locust user asks for (the defaults allow
60 upload URLs a minute).
"""

from __future__ import annotations

import io
import itertools
import os
import time
from typing import Any

from locust import HttpUser, between, task
from PIL import Image

from image_service.auth.tokens import issue_token

PROCESSING_SECONDS = 60
_numbers = itertools.count()


def _photo() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((640, 480), 40).convert("RGB").save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


PHOTO = _photo()


class ImageServiceUser(HttpUser):
    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        secret = os.environ["IMAGE_SERVICE_JWT_SECRET"]
        token = issue_token(secret, f"locust-{next(_numbers)}", ttl_seconds=24 * 3600)
        self.client.headers["Authorization"] = f"Bearer {token}"

    @task
    def lifecycle(self) -> None:
        upload = self._json(
            "POST",
            "/images/upload",
            json={"content_type": "image/jpeg", "size": len(PHOTO), "tags": ["locust"]},
            expected=201,
        )
        if upload is None:
            return
        image_id = upload["image_id"]
        headers = {k: v for k, v in upload["headers"].items() if k.lower() != "content-length"}
        with self.client.put(
            upload["upload_url"],
            data=PHOTO,
            headers={**headers, "Authorization": None},  # a presigned URL carries its own
            name="S3 PUT",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"S3 answered {response.status_code}")
                return
        if self._json("POST", f"/images/{image_id}/complete", name="/images/[id]/complete") is None:
            return
        if not self._wait_until_ready(image_id):
            return
        self._json("GET", "/images?limit=20")
        download = self._json("GET", f"/images/{image_id}/download", name="/images/[id]/download")
        if download is not None:
            with self.client.get(
                download["download_url"],
                headers={"Authorization": None},
                name="S3 GET",
                catch_response=True,
            ) as response:
                if response.content != PHOTO:
                    response.failure("the download differs from the upload")
        self.client.delete(f"/images/{image_id}?permanent=true", name="/images/[id] DELETE")

    def _wait_until_ready(self, image_id: str) -> bool:
        """Polls the image until it is ready; the whole wait is one line of the statistics."""
        started = time.perf_counter()
        outcome: Exception | None = TimeoutError(f"not ready within {PROCESSING_SECONDS} s")
        while time.perf_counter() - started < PROCESSING_SECONDS:
            image = self._json("GET", f"/images/{image_id}", name="/images/[id]")
            status = None if image is None else image["status"]
            if status == "ready":
                outcome = None
                break
            if status not in {"pending", "processing"}:
                outcome = RuntimeError(f"ended {status}")
                break
            time.sleep(0.05)
        self.environment.events.request.fire(
            request_type="WAIT",
            name="wait for ready",
            response_time=1000 * (time.perf_counter() - started),
            response_length=0,
            exception=outcome,
            context={},
        )
        return outcome is None

    def _json(
        self, method: str, path: str, *, expected: int = 200, name: str | None = None, **kwargs: Any
    ) -> Any:
        with self.client.request(
            method, path, name=name or path, catch_response=True, **kwargs
        ) as response:
            if response.status_code != expected:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return None
            return response.json()
