"""Where a per-upload ``callback_url`` may point, and where an import may fetch from: public
internet addresses only, unless the operator allows private ones
(``IMAGE_SERVICE_WEBHOOK_ALLOW_PRIVATE``, ``IMAGE_SERVICE_IMPORT_ALLOW_PRIVATE``).

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
import base64
import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

MAX_CALLBACK_URL_LENGTH = 2048
_WHSEC = "whsec_"
# NAT64's well-known prefix (RFC 6052): a translator takes 64:ff9b::a.b.c.d to a.b.c.d.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Never a callback's destination: NAT64's local-use prefix (RFC 8215; where the IPv4 address
# sits is the network's choice) and the deprecated IPv4-compatible form (::a.b.c.d).
_REFUSED_V6 = (ipaddress.IPv6Network("64:ff9b:1::/48"), ipaddress.IPv6Network("::/96"))
# EC2's instance metadata over IPv6 (fd00:ec2::254): link-local in purpose, not in prefix.
_METADATA_V6 = ipaddress.IPv6Network("fd00:ec2::/64")


def callback_signing_key(master: str, owner: str) -> str:
    """The key that signs ``owner``'s callbacks, derived from a master key (a webhook secret's
    form: ``whsec_`` + base64, or a plain string): ``whsec_`` + base64 of 32 bytes, usable as it
    is by any Standard Webhooks library. One owner's key tells nothing of another's, nor of the
    master, nor of the operator's own key."""
    if master.startswith(_WHSEC):
        master_bytes = base64.b64decode(master.removeprefix(_WHSEC))
    else:
        master_bytes = master.encode()
    derived = hmac.new(
        master_bytes, b"image-service/callback-key\n" + owner.encode(), hashlib.sha256
    ).digest()
    return _WHSEC + base64.b64encode(derived).decode()


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
        if ip in _NAT64:  # judged as the IPv4 address it reaches
            return public_address(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        if any(ip in network for network in _REFUSED_V6):
            return False
    return ip.is_global and not ip.is_multicast


def privately_reachable(address: str) -> bool:
    """Whether a deployment that allows private destinations may still reach ``address``:
    anything but link-local, where clouds serve instance metadata and its credentials
    (169.254.169.254, ECS's 169.254.170.2, EC2's ``fd00:ec2::254``)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is None and ip in _NAT64:
            mapped = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if mapped is not None:
            return privately_reachable(str(mapped))
        if ip in _METADATA_V6:
            return False
    return not ip.is_link_local


def reachable(*, allow_private: bool) -> Callable[[str], bool]:
    """The check every resolved address of a destination must pass."""
    return privately_reachable if allow_private else public_address


async def resolved_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


async def url_refusal(
    url: str, *, allow_private: bool, is_public: Callable[[str], bool] | None = None
) -> str | None:
    """Why the service will not send to (a callback) or fetch from (an import) ``url``: a
    reason, or None. Each address the host resolves to is judged by ``is_public`` (by default
    public addresses only; with ``allow_private`` anything but link-local metadata)."""
    check = is_public or reachable(allow_private=allow_private)
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "not an absolute http(s) URL"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "not a valid port"
    try:
        addresses = await resolved_addresses(parts.hostname, port)
    except (OSError, UnicodeError):
        if allow_private:
            return None  # a private name this process cannot resolve now; judged at connect
        return "its host does not resolve"
    if not addresses or not all(check(address) for address in addresses):
        if allow_private:
            return "its host is a link-local (metadata) address"
        return "its host is not a public address"
    return None
