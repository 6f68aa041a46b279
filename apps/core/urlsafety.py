"""Outbound URLs the platform may call (webhooks): http(s) only, and only globally routable
addresses (SSRF): never one inside the network it runs in, however it is written (an IPv6
form that wraps an IPv4 address is judged by that address). WEBHOOK_ALLOW_PRIVATE=1 lifts
the address rule for local use, except for cloud metadata."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

# Cloud metadata endpoints, refused even when private addresses are allowed.
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("169.254.170.2"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),
    }
)
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeURL(ValueError):
    pass


def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeURL(f"the host {host!r} does not resolve: {exc.strerror}") from None
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def check_outbound_url(url: str, *, resolve_host: bool = True) -> list[str]:
    """Raise UnsafeURL when `url` may not be called; returns the addresses it resolves to,
    which the caller should connect to (so a DNS answer cannot change between check and use)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("only http and https URLs are allowed")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeURL("credentials in the URL are not allowed")
    host = parts.hostname.rstrip(".").lower()
    if host in METADATA_HOSTS:
        raise UnsafeURL("cloud metadata endpoints are not allowed")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeURL("the URL's port is not valid") from None
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        if not resolve_host:
            return []
        addresses = resolve(host, port)
    for address in addresses:
        refusal = address_refusal(address)
        if refusal is not None:
            raise UnsafeURL(refusal)
    return [str(a) for a in addresses]


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches through a transition form: IPv4-mapped
    (::ffff:a.b.c.d), 6to4 (2002::/16), Teredo (2001::/32: its server and its client) and
    well-known NAT64 (64:ff9b::/96, RFC 6052). A socket, a relay or a NAT64 gateway turns each
    into a connection to that IPv4 address, so the address rule is applied to it."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    if address in _NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return []


def address_refusal(address: IPAddress) -> str | None:
    """Why the platform may not connect to `address`, or None when it may: only globally
    routable addresses are allowed, and an IPv6 form that embeds an IPv4 address is judged
    by that IPv4 address too. With WEBHOOK_ALLOW_PRIVATE only cloud metadata (and the IPv4
    link-local range it lives in) stays refused, whatever form it is written in."""
    inner = embedded_ipv4(address)
    if settings.WEBHOOK_ALLOW_PRIVATE:
        for candidate in (address, *inner):
            if candidate in METADATA_ADDRESSES or candidate in _IPV4_LINK_LOCAL:
                return f"the address {address} is a cloud metadata or link-local address"
        return None
    for candidate in (address, *inner):
        if candidate in METADATA_ADDRESSES:
            return f"the address {address} is a cloud metadata address"
    if inner:
        # The IPv6 wrapper itself (6to4, Teredo, NAT64, mapped) is not global by IANA's
        # registry; what the connection reaches is the IPv4 address inside.
        for candidate in inner:
            if not _is_global(candidate):
                return (
                    f"the address {address} leads to {candidate}, which is private, loopback or link-local, "
                    "or otherwise not globally routable"
                )
        return None
    if not _is_global(address):
        return f"the address {address} is private, loopback or link-local, or otherwise not globally routable"
    return None


def _is_global(address: IPAddress) -> bool:
    """Globally routable: `is_global` (IANA's special-purpose registries) and outside the
    ranges it lets through on some Python versions (multicast, 192.0.0.0/24, the 6to4 relay
    anycast 192.88.99.0/24, NAT64 and the other transition prefixes, unwrapped above)."""
    if not address.is_global or address.is_multicast or address.is_reserved or address.is_unspecified:
        return False
    return not any(address in network for network in _NOT_GLOBAL)


# Ranges refused even where ipaddress's is_global says otherwise (it changed across Python
# releases): the IANA IPv4 and IPv6 special-purpose registries' non-global entries, rounded
# up to their whole block.
_NOT_GLOBAL: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments (192.0.0.8 and the rest)
        "192.0.2.0/24",
        "192.88.99.0/24",  # 6to4 relay anycast (RFC 7526)
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/3",  # multicast, reserved and broadcast
        "::/96",  # unspecified, loopback and the deprecated IPv4-compatible form
        "::ffff:0:0/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): never global
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "2002::/16",
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")
