"""Typed keys for what the app and each request carry."""

from __future__ import annotations

import asyncio

from aiohttp import web

from image_service.auth.tokens import TokenVerifier
from image_service.domain.albums import Albums
from image_service.domain.apikeys import ApiKeys
from image_service.domain.batch import BatchOps
from image_service.domain.completion import Completion
from image_service.domain.imports import Imports
from image_service.domain.library import Library
from image_service.domain.models import Principal
from image_service.domain.renditions import Renditions
from image_service.domain.shares import Shares, ShareUrls
from image_service.domain.trash import Trash
from image_service.domain.uploads import Uploads
from image_service.domain.watch import StatusWatcher
from image_service.metrics import ServiceMetrics
from image_service.settings import Settings
from image_service.storage.clients import AwsClients
from image_service.storage.dynamo import ImageRepository
from image_service.storage.queue import JobQueue
from image_service.storage.s3 import ObjectStore

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", ServiceMetrics)
TOKEN_VERIFIER = web.AppKey("token_verifier", TokenVerifier)
API_KEYS = web.AppKey("api_keys", ApiKeys)
ALBUMS = web.AppKey("albums", Albums)
BATCH = web.AppKey("batch", BatchOps)
SHARES = web.AppKey("shares", Shares)
SHARE_URLS = web.AppKey("share_urls", ShareUrls)
OBJECT_STORE = web.AppKey("object_store", ObjectStore)
IMAGE_REPOSITORY = web.AppKey("image_repository", ImageRepository)
# The image lifecycle's jobs (domain/): each handler calls the one that owns its job.
UPLOADS = web.AppKey("uploads", Uploads)
COMPLETION = web.AppKey("completion", Completion)
LIBRARY = web.AppKey("library", Library)
TRASH = web.AppKey("trash", Trash)
IMPORTS = web.AppKey("imports", Imports)
JOB_QUEUE = web.AppKey("job_queue", JobQueue)
RENDITIONS = web.AppKey("renditions", Renditions)
WATCHER = web.AppKey("watcher", StatusWatcher)
# The app's AWS clients: their botocore event hooks are where instrumentation attaches.
AWS_CLIENTS = web.AppKey("aws_clients", AwsClients)

PRINCIPAL = web.RequestKey("principal", Principal)
REQUEST_ID = web.RequestKey("request_id", str)
# The request's deadline (middlewares.deadline): a request that holds on purpose moves it.
DEADLINE = web.RequestKey("deadline", asyncio.Timeout)
