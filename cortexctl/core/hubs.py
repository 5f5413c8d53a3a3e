"""Hubs: each running hub holds a lease row; a hub whose lease lapsed is gone."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from cortexctl.core import clock
from cortexctl.store.models import Hub

HUB_LEASE_S = 15.0


def register_hub(session: Session, hub_id: str, address: str, lease_s: float = HUB_LEASE_S) -> None:
    now = clock.now()
    hub = session.get(Hub, hub_id)
    if hub is None:
        hub = Hub(id=hub_id)
        session.add(hub)
    hub.address = address
    hub.pid = os.getpid()
    hub.hostname = socket.gethostname()
    hub.started_at = now
    hub.lease_expires_at = now + timedelta(seconds=lease_s)
    hub.stopped_at = None


def renew_hub(session: Session, hub_id: str, lease_s: float = HUB_LEASE_S) -> None:
    hub = session.get(Hub, hub_id)
    if hub is not None and hub.stopped_at is None:
        hub.lease_expires_at = clock.now() + timedelta(seconds=lease_s)


def stop_hub(session: Session, hub_id: str) -> None:
    hub = session.get(Hub, hub_id)
    if hub is not None:
        hub.stopped_at = clock.now()
        hub.lease_expires_at = hub.stopped_at


def live_hub_ids(session: Session, at: datetime | None = None) -> set[str]:
    at = at or clock.now()
    return set(
        session.scalars(select(Hub.id).where(Hub.stopped_at.is_(None), Hub.lease_expires_at > at))
    )
