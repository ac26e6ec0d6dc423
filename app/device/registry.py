"""Live device connections, by user and device.

Other code asks the registry whether a user (or one of their desktops) is
online and reaches a device through it. A user may have several desktops
online; a desktop that reconnects replaces its older connection.
"""

from __future__ import annotations

import uuid
from collections import defaultdict

from app.device.link import DeviceLink

RETRY_AFTER_S = 30.0


class ConnectionLimitError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.retry_after = RETRY_AFTER_S


class DeviceRegistry:
    """Counts sockets against the limits and maps (user, device) to live links."""

    def __init__(self, *, max_per_user: int, max_total: int) -> None:
        self._max_per_user = max_per_user
        self._max_total = max_total
        self._sockets: defaultdict[uuid.UUID, int] = defaultdict(int)
        self._total = 0
        self._links: dict[uuid.UUID, dict[str, DeviceLink]] = {}

    # Sockets are counted from accept to close, greeted or not, so a flood of
    # silent connections hits the limits too.
    def reserve(self, user_id: uuid.UUID) -> None:
        if self._total >= self._max_total:
            msg = "the server is at its connection limit; try again later"
            raise ConnectionLimitError(msg)
        if self._sockets[user_id] >= self._max_per_user:
            msg = f"at most {self._max_per_user} connections per user"
            raise ConnectionLimitError(msg)
        self._sockets[user_id] += 1
        self._total += 1

    def release(self, user_id: uuid.UUID) -> None:
        self._sockets[user_id] -= 1
        self._total -= 1
        if self._sockets[user_id] <= 0:
            del self._sockets[user_id]

    def bind(self, link: DeviceLink) -> DeviceLink | None:
        """Make `link` the device's live connection; returns the one it replaces."""
        devices = self._links.setdefault(link.user_id, {})
        previous = devices.get(link.device_id)
        devices[link.device_id] = link
        return previous

    def unbind(self, link: DeviceLink) -> None:
        devices = self._links.get(link.user_id, {})
        if devices.get(link.device_id) is link:
            del devices[link.device_id]
            if not devices:
                del self._links[link.user_id]

    def is_online(self, user_id: uuid.UUID, device_id: str | None = None) -> bool:
        return self.device(user_id, device_id) is not None

    def device(self, user_id: uuid.UUID, device_id: str | None = None) -> DeviceLink | None:
        """A given device of the user, or (device_id None) the most recently active one."""
        devices = self._links.get(user_id, {})
        if device_id is not None:
            return devices.get(device_id)
        return max(devices.values(), key=lambda link: link.last_active, default=None)

    def devices(self, user_id: uuid.UUID) -> list[DeviceLink]:
        return list(self._links.get(user_id, {}).values())

    def connected(self) -> list[tuple[uuid.UUID, str]]:
        """Every (user, device) connected to this instance."""
        return [(user, device) for user, devices in self._links.items() for device in devices]

    @property
    def connection_count(self) -> int:
        return self._total
