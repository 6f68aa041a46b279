"""Outbound URLs the platform may call (webhooks): http(s) only, and never an address inside
the network it runs in (SSRF). WEBHOOK_ALLOW_PRIVATE=1 lifts the address rule for local use."""

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


class UnsafeURL(ValueError):
    pass


def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
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
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE
    for address in addresses:
        if address in METADATA_ADDRESSES:
            raise UnsafeURL("cloud metadata endpoints are not allowed")
        if allow_private:
            continue
        if (
            address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_multicast
            or address.is_reserved
            or address.is_unspecified
            or getattr(address, "ipv4_mapped", None) is not None
        ):
            raise UnsafeURL(f"the address {address} is private, loopback or link-local")
    return [str(a) for a in addresses]
