"""Opening the AWS clients: one aioboto3 session, one client per service, closed together."""

from __future__ import annotations

import functools
import os
import ssl
import urllib.request
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aioboto3
import aiohttp
import botocore.httpsession
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession

from image_service import __version__
from image_service.settings import Settings, SettingsError
from image_service.storage.botocore_memo import remember_repeated_work
from image_service.storage.dynamo.calls import BotocoreTableCalls, TableCalls
from image_service.storage.dynamo.wire import DynamoDBWire
from image_service.storage.provision import (
    bucket_differences,
    ensure_bucket,
    ensure_queue,
    ensure_table,
    ensure_upload_notifications,
    notification_differences,
    queue_differences,
    table_differences,
)
from image_service.storage.sigv4 import Credentials, CredentialSource

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sqs import SQSClient

# Deliberate limits (docs/reliability.md): a call fails fast, and the API answers 503, rather than
# hang on a backend that has gone away.
# - Connect: AWS endpoints answer a SYN in milliseconds; 2 s leaves room for one lost SYN (1 s).
CONNECT_TIMEOUT_SECONDS = 2
# - Read: the longest silence between two bytes of an answer. Every call is a small JSON answer
#   or a stream read chunk by chunk (the timeout applies per read, not to the whole body), and
#   S3's server-side copy of an image of 20 MiB answers well within it.
READ_TIMEOUT_SECONDS = 5
# - Long polls: a receive waits up to IMAGE_SERVICE_QUEUE_WAIT_SECONDS for a message before SQS
#   answers, so its client reads for that long plus the usual read timeout. A shorter read
#   timeout abandons the receive on a quiet queue, and SQS can still hand the abandoned receive
#   a message, which then stays hidden for a whole visibility timeout (docs/reliability.md).
# - Attempts: standard mode retries throttling, 5xx and connection errors with jittered backoff;
#   the API's request deadline (IMAGE_SERVICE_REQUEST_TIMEOUT_SECONDS) caps the whole.
MAX_ATTEMPTS = 3
# - Pool: per client, so one service's stall never holds another's connections; 64 matches the
#   concurrency one API process sustains (bench/api.py) and a worker's default 4 jobs easily.
MAX_POOL_CONNECTIONS = 64


@dataclass(frozen=True, slots=True)
class AwsClients:
    s3: S3Client
    # Signs URLs for clients; differs from `s3` only when they reach S3 at another address.
    s3_presign: S3Client
    # Provisioning and tools; the service's own table calls go through `table`.
    dynamodb: DynamoDBClient
    # The table's calls, by the configured transport (aiobotocore's client by default).
    table: TableCalls
    sqs: SQSClient
    # Receives only: a read timeout longer than the long poll (see the read timeout above).
    sqs_long_poll: SQSClient
    region: str
    # The credentials the clients sign with, for URLs the service signs itself.
    credentials: CredentialSource
    # Plain HTTP to AWS, for the direct transport's calls (DynamoDB's, S3 reads by URL).
    http: aiohttp.ClientSession
    transport: str
    # Opened only with IMAGE_SERVICE_CDN=cloudfront: the worker's purges (worker/cdn.py).
    cloudfront: Any | None = None

    @property
    def direct(self) -> bool:
        return self.transport == "direct"


# Sent in every user agent (botocore's `app/<id>`): how AWS-side logs tell this service's calls.
APP_ID = "image-service"


def direct_user_agent() -> str:
    """The direct transport's user agent, in the shape botocore writes its own."""
    return f"image-service/{__version__} md/transport#direct app/{APP_ID}"


def aws_config(settings: Settings, *, read_timeout: float = READ_TIMEOUT_SECONDS) -> AioConfig:
    return AioConfig(
        user_agent_appid=APP_ID,
        # "when_required" for S3-compatible stores that refuse botocore's newer default
        # checksums (boto/botocore#3216); AWS takes either.
        request_checksum_calculation=settings.s3_checksum_mode,
        response_checksum_validation=settings.s3_checksum_mode,
        # botocore still presigns with SigV2 in us-east-1 unless told otherwise.
        signature_version="s3v4",
        s3={"addressing_style": settings.s3_addressing_style},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=read_timeout,
        retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        max_pool_connections=MAX_POOL_CONNECTIONS,
        http_session_cls=SharedContextSession,
        # Every request is built by our storage modules and checked by AWS on arrival; botocore's
        # own check of each parameter tree is a large share of a call's CPU.
        parameter_validation=False,
    )


def proxy_for(url: str) -> str | None:
    """The proxy HTTPS_PROXY/HTTP_PROXY name for ``url`` unless NO_PROXY exempts it, as
    botocore honours them; decided once (aiohttp's trust_env reads them, and ~/.netrc, in a
    thread for every request)."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


@functools.lru_cache(maxsize=8)
def _verifying_context(ca_bundle: str) -> ssl.SSLContext:
    """One TLS context per CA bundle and process: loading a bundle takes about 20 ms of CPU,
    and aiobotocore loaded it again for every client it opened."""
    context: ssl.SSLContext = botocore.httpsession.create_urllib3_context()
    context.load_verify_locations(ca_bundle)
    return context


def _host_ssl_context() -> ssl.SSLContext:
    """Verifies AWS's certificates as botocore does: AWS_CA_BUNDLE, else botocore's bundle."""
    return _verifying_context(
        os.environ.get("AWS_CA_BUNDLE") or botocore.httpsession.get_cert_path(True)
    )


class SharedContextSession(AIOHTTPSession):
    """aiobotocore's HTTP session, verifying with the process's one context for the bundle
    botocore chose (``verify``: AWS_CA_BUNDLE, a profile's ``ca_bundle``, or its own), instead
    of a context of its own per client. A proxy or a client certificate keeps aiobotocore's
    own way: those contexts differ by design."""

    def _create_connector(self, proxy_url: str | None) -> aiohttp.TCPConnector:
        # aiobotocore's own state, which its type stubs do not declare.
        own: Any = self
        if not own._verify or proxy_url or own._cert_file:
            base: Any = super()
            connector: aiohttp.TCPConnector = base._create_connector(proxy_url)
            return connector
        ca_bundle = botocore.httpsession.get_cert_path(own._verify)
        return aiohttp.TCPConnector(
            limit=own._max_pool_connections,
            ssl=_verifying_context(ca_bundle),
            **own._connector_args,
        )


@asynccontextmanager
async def aws_clients(settings: Settings) -> AsyncIterator[AwsClients]:
    """Region, credentials and endpoints come from the standard AWS chain (AWS_ENDPOINT_URL...)."""
    session = aioboto3.Session()
    region = session.region_name
    if not region:
        raise SettingsError("AWS_REGION: is required (or AWS_DEFAULT_REGION, or a profile region)")
    config = aws_config(settings)
    async with AsyncExitStack() as stack:

        async def client(service: str, config: AioConfig = config, **options: Any) -> Any:
            opened = session.client(service, config=config, **options)
            return remember_repeated_work(await stack.enter_async_context(opened))

        s3: S3Client = await client("s3")
        presign = s3
        if settings.s3_public_url:
            presign = await client("s3", endpoint_url=settings.s3_public_url)
        dynamodb: DynamoDBClient = await client("dynamodb")
        sqs: SQSClient = await client("sqs")
        long_poll = aws_config(
            settings, read_timeout=settings.queue_wait_seconds + READ_TIMEOUT_SECONDS
        )
        sqs_long_poll: SQSClient = await client("sqs", config=long_poll)
        found = await session.get_credentials()
        if found is None:
            raise SettingsError("AWS credentials: none found in the environment or profile")

        async def credentials() -> Credentials:
            # Temporary credentials are refreshed here by botocore's provider when they age.
            frozen = await found.get_frozen_credentials()
            return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

        http = await stack.enter_async_context(
            aiohttp.ClientSession(
                headers={"User-Agent": direct_user_agent()},
                connector=aiohttp.TCPConnector(limit=MAX_POOL_CONNECTIONS, ssl=_host_ssl_context()),
                timeout=aiohttp.ClientTimeout(
                    sock_connect=CONNECT_TIMEOUT_SECONDS, sock_read=READ_TIMEOUT_SECONDS
                ),
            )
        )
        yield AwsClients(
            s3=s3,
            s3_presign=presign,
            dynamodb=dynamodb,
            table=(
                DynamoDBWire(
                    endpoint_url=dynamodb.meta.endpoint_url,
                    region=region,
                    credentials=credentials,
                    session=http,
                    proxy=proxy_for(dynamodb.meta.endpoint_url),
                    max_attempts=MAX_ATTEMPTS,
                    user_agent=direct_user_agent(),
                )
                if settings.aws_transport == "direct"
                else BotocoreTableCalls(dynamodb)
            ),
            sqs=sqs,
            sqs_long_poll=sqs_long_poll,
            region=region,
            credentials=credentials,
            http=http,
            transport=settings.aws_transport,
            cloudfront=await client("cloudfront") if settings.cdn == "cloudfront" else None,
        )


async def provision(settings: Settings) -> None:
    """Creates the bucket (private, with CORS for browser uploads) and the table; idempotent."""
    async with aws_clients(settings) as clients:
        await ensure_bucket(
            clients.s3, settings.bucket, region=clients.region, cors_origins=settings.cors_origins
        )
        await ensure_table(clients.dynamodb, settings.table)
        queue = await ensure_queue(
            clients.sqs,
            settings.queue_name,
            max_receives=settings.job_max_receives,
            visibility_timeout=settings.job_visibility_seconds,
        )
        if settings.s3_event_notifications:
            await ensure_upload_notifications(clients.s3, clients.sqs, settings.bucket, queue)


async def provisioning_differences(settings: Settings) -> list[str]:
    """What ``provision`` would create or change, each as a sentence; none when the resources
    (made by init, a CloudFormation stack or by hand) are as the service needs them."""
    async with aws_clients(settings) as clients:
        found = await bucket_differences(
            clients.s3, settings.bucket, cors_origins=settings.cors_origins
        )
        found += await table_differences(clients.dynamodb, settings.table)
        found += await queue_differences(
            clients.sqs,
            settings.queue_name,
            max_receives=settings.job_max_receives,
            visibility_timeout=settings.job_visibility_seconds,
        )
        if settings.s3_event_notifications and not any("missing" in f for f in found):
            found += await notification_differences(
                clients.s3, clients.sqs, settings.bucket, settings.queue_name
            )
        return found
