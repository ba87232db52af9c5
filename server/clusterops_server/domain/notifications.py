"""Webhook subscriptions: who gets which work request changes, and how delivery goes."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from clusterops_server.domain.work_requests import EntityType, WorkRequestStatus

MIN_SECRET_LENGTH = 16


class SubscriptionState(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"


@dataclass(frozen=True)
class WebhookSettings:
    """Retries back off exponentially from `initial_backoff` to `max_backoff` (each
    delay drawn between half and all of it, so receivers coming back are not hit by
    every sender at once); a subscription failing for `suspend_after` is suspended."""

    initial_backoff: timedelta = timedelta(seconds=1)
    max_backoff: timedelta = timedelta(minutes=5)
    # Half the default event retention: an operator has as long again to resume it
    # before the events it missed are compacted.
    suspend_after: timedelta = timedelta(hours=12)
    # One replica delivers a subscription while it holds the lease; another takes over
    # once it lapses (a crashed replica's subscriptions wait at most this long).
    lease: timedelta = timedelta(seconds=30)
    # How long one POST may take, in seconds of wall time.
    request_timeout: float = 10.0

    def backoff(self, failures: int, rng: random.Random) -> timedelta:
        capped = min(self.max_backoff, self.initial_backoff * 2 ** max(0, failures - 1))
        jittered: timedelta = capped * rng.uniform(0.5, 1.0)
        return jittered


@dataclass
class DeliveryState:
    cursor: int
    last_attempt: datetime | None = None
    last_status: int = 0
    last_error: str = ""
    failures: int = 0
    failing_since: datetime | None = None
    next_attempt: datetime | None = None


@dataclass
class Subscription:
    id: str
    compartment_id: str
    url: str
    secret: str
    created_at: datetime
    delivery: DeliveryState
    resource_id: str = ""
    resource_type: EntityType | None = None
    statuses: frozenset[WorkRequestStatus] = frozenset()
    # The AIP-160 text, as given (parsed again when delivering).
    filter: str = ""
    state: SubscriptionState = SubscriptionState.ACTIVE
    suspended_reason: str = ""
    owner: str | None = field(default=None, compare=False)


# Browsers' and proxies' common ceiling; a longer "URL" is a mistake or an attack.
MAX_URL_LENGTH = 2048


def url_problem(url: str) -> str | None:
    """Why `url` cannot receive deliveries, or None: https, or http to a loopback host.

    Credentials in the URL are refused: the URL is shown to everyone who may read the
    subscription, and the signature header already authenticates each delivery."""
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters long (it has {len(url)})"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises for a malformed port)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in {"https", "http"} or not host:
        return "must be an https:// URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password (user:password@host)"
    if parts.fragment:
        return "must not have a #fragment (it is never sent to the receiver)"
    if _never_a_receiver(host):
        return (
            "must not point at a link-local, multicast or unspecified address "
            "(169.254.0.0/16 holds cloud metadata services)"
        )
    if parts.scheme == "http" and not _loopback(host):
        return "must use https (plain http only to a loopback address, for local use)"
    return None


def _never_a_receiver(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_link_local or address.is_multicast or address.is_unspecified


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
