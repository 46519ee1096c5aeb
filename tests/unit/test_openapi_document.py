"""The OpenAPI document the service serves, byte for byte as recorded in docs/openapi.json: a
change to the API's contract is a change to that file, made on purpose (`make openapi`), and a
refactoring that changes neither leaves it as it was."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from image_service.programs.app import create_app
from image_service.settings import Settings

RECORDED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


async def served_document() -> bytes:
    """The document as /docs/openapi.json serves it (no backend is opened for it)."""
    app = create_app(Settings(jwt_secret="openapi-" + "k" * 40))
    app.cleanup_ctx.clear()
    async with TestClient(TestServer(app)) as client, client.get("/docs/openapi.json") as answer:
        assert answer.status == 200
        return await answer.read()


async def test_the_served_document_is_the_recorded_one() -> None:
    served = await served_document()
    json.loads(served)  # a document, whatever else
    assert served == RECORDED.read_bytes(), "the API changed: `make openapi` records it"
