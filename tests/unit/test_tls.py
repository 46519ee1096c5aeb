"""The AWS clients' TLS (storage/clients.py, SharedContextSession): one verifying context per
CA bundle and process, verifying exactly as aiobotocore's own did: a server whose certificate
the bundle does not vouch for is refused, the bundle botocore was told to use is the one used,
and ``verify=False`` verifies nothing."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from image_service.storage.clients import SharedContextSession


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """An HTTPS server on loopback with a certificate no public bundle vouches for."""
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def answer(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    yield f"https://127.0.0.1:{port}/", cert
    await runner.cleanup()


async def _get(session_verify: bool | str, url: str) -> int:
    connector = SharedContextSession(verify=session_verify)._create_connector(None)  # type: ignore[arg-type]
    async with aiohttp.ClientSession(connector=connector) as http, http.get(url) as answer:
        return answer.status


async def test_a_certificate_the_bundle_does_not_vouch_for_is_refused(
    tls_server: tuple[str, Path],
) -> None:
    url, _ = tls_server
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await _get(True, url)  # botocore's own bundle


async def test_the_bundle_botocore_is_given_is_the_one_that_verifies(
    tls_server: tuple[str, Path],
) -> None:
    url, cert = tls_server
    assert await _get(str(cert), url) == 200


async def test_verify_false_verifies_nothing(tls_server: tuple[str, Path]) -> None:
    url, _ = tls_server
    assert await _get(False, url) == 200


async def test_every_client_shares_one_context_per_bundle(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    connectors = [
        SharedContextSession(verify=verify)._create_connector(None)  # type: ignore[arg-type]
        for verify in (True, True, str(cert), str(cert))
    ]
    contexts = [connector._ssl for connector in connectors]
    for connector in connectors:
        await connector.close()
    assert contexts[0] is contexts[1]
    assert contexts[2] is contexts[3]
    assert contexts[0] is not contexts[2]
    assert all(context.verify_mode is ssl.CERT_REQUIRED for context in contexts)
