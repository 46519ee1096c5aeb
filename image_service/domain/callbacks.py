"""Where a per-upload ``callback_url`` may point: public internet addresses only, unless the
operator allows private ones (``IMAGE_SERVICE_WEBHOOK_ALLOW_PRIVATE``).

A callback URL is the caller's to choose, and the service POSTs to it from inside its network:
left unchecked it reaches the cloud's metadata endpoint (169.254.169.254), the service's own
backends on loopback, or anything on the private network. The host is resolved and *every*
address it resolves to is checked: numeric forms (``2130706433``, ``0x7f.1``, ``[::ffff:
127.0.0.1]``) resolve to what they mean, and a DNS name that resolves to a private address is a
private address. The check runs when the URL is given, and again on every delivery, on the
address the connection is then made to (a name may resolve elsewhere by then); redirects are
never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

MAX_CALLBACK_URL_LENGTH = 2048


def public_address(address: str) -> bool:
    """Whether an IP address is a public, routable unicast one."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone is not the address
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return public_address(str(mapped))
        if ip.teredo is not None:
            return False
    return ip.is_global and not ip.is_multicast


async def resolved_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


async def callback_refusal(url: str, *, allow_private: bool) -> str | None:
    """Why the service will not deliver to ``url`` (a reason), or None."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "not an absolute http(s) URL"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "not a valid port"
    if allow_private:
        return None
    try:
        addresses = await resolved_addresses(parts.hostname, port)
    except (OSError, UnicodeError):
        return "its host does not resolve"
    if not addresses or not all(public_address(address) for address in addresses):
        return "its host is not a public address"
    return None
