"""Where the broker is and how the publisher behaves: :class:`MqttSettings`.

Settings come from a URL (``mqtt://user:pass@host:1883``, ``mqtts://...`` for TLS),
keyword arguments, or the environment (``LABRIG_MQTT_URL``, ``LABRIG_MQTT_USERNAME``,
``LABRIG_MQTT_PASSWORD``, ``LABRIG_MQTT_CA``, ``LABRIG_MQTT_PREFIX``). Explicit
arguments win over the URL, and the URL over the environment.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["ENV_VARS", "MqttConfigError", "MqttSettings"]

ENV_VARS = (
    "LABRIG_MQTT_URL",
    "LABRIG_MQTT_USERNAME",
    "LABRIG_MQTT_PASSWORD",
    "LABRIG_MQTT_CA",
    "LABRIG_MQTT_PREFIX",
)

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# A station or prefix level: no MQTT wildcards, no empty levels, no control characters.
_LEVEL = re.compile(r"^[^/+#\x00-\x1f]+$")


class MqttConfigError(ValueError):
    """The MQTT settings are not usable; the message says which value and why."""


def _check_prefix(prefix: str) -> str:
    levels = prefix.split("/")
    if not prefix or not all(_LEVEL.match(level) for level in levels):
        raise MqttConfigError(
            f"MQTT prefix {prefix!r} is not valid: it must be one or more '/'-separated "
            "levels with no empty level and no '+', '#' or control characters"
        )
    return prefix


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Connection and behaviour of an :class:`~orchestrator.mqtt.MqttPublisher`.

    ``prefix`` defaults to ``labrig/<station>``. ``telemetry_hz`` is the most telemetry
    messages per second per channel; faster calls are dropped and counted.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None
    station: str = "default"
    prefix: str = ""
    client_id: str | None = None
    keepalive_s: int = 10
    telemetry_hz: float = 1.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 5.0
    publish_timeout_s: float = 10.0
    inflight_window: int = 8
    max_pending_events: int = 100_000
    max_pending_telemetry: int = 4096
    drain_timeout_s: float = 5.0
    command_timeout_s: float = 5.0
    owns_station_state: bool = True

    def __post_init__(self) -> None:
        if not _LEVEL.match(self.station):
            raise MqttConfigError(
                f"station name {self.station!r} is not valid in an MQTT topic "
                "(no '/', '+', '#', empty name or control characters)"
            )
        if not self.prefix:
            object.__setattr__(self, "prefix", f"labrig/{self.station}")
        _check_prefix(self.prefix)
        if not self.host:
            raise MqttConfigError("MQTT host is empty")
        if not 0 < self.port < 65536:
            raise MqttConfigError(f"MQTT port {self.port} is outside 1..65535")
        if not (math.isfinite(self.telemetry_hz) and self.telemetry_hz > 0):
            raise MqttConfigError(f"telemetry_hz must be > 0, got {self.telemetry_hz}")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise MqttConfigError(
                "reconnect delays must satisfy 0 < reconnect_min_s <= reconnect_max_s"
            )
        if self.keepalive_s < 1:
            raise MqttConfigError(f"keepalive_s must be >= 1, got {self.keepalive_s}")
        if self.inflight_window < 1:
            raise MqttConfigError("inflight_window must be >= 1")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise MqttConfigError(f"MQTT CA file {self.ca_file!r} does not exist")

    @property
    def url(self) -> str:
        """The broker URL without the password (safe to log)."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"

    def replace(self, **changes: Any) -> MqttSettings:
        """A copy with some fields changed (``prefix`` re-derived if only station changes)."""
        if (
            "station" in changes
            and "prefix" not in changes
            and self.prefix == (f"labrig/{self.station}")
        ):
            changes["prefix"] = ""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        ca_file: str | None = None,
        prefix: str | None = None,
        station: str | None = None,
        username: str | None = None,
        password: str | None = None,
        **options: Any,
    ) -> MqttSettings:
        """Parse ``mqtt[s]://[user:pass@]host[:port]``; keyword arguments override."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise MqttConfigError(f"MQTT URL {url!r} is not valid: {exc}") from None
        if parts.scheme not in _DEFAULT_PORTS:
            raise MqttConfigError(
                f"MQTT URL {url!r} must start with mqtt:// or mqtts://, not {parts.scheme!r}"
            )
        if not parts.hostname:
            raise MqttConfigError(f"MQTT URL {url!r} has no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise MqttConfigError(
                f"MQTT URL {url!r} must not have a path, query or fragment "
                "(use --prefix / LABRIG_MQTT_PREFIX for the topic prefix)"
            )
        kwargs: dict[str, Any] = dict(options)
        kwargs["host"] = parts.hostname
        kwargs["port"] = port if port is not None else _DEFAULT_PORTS[parts.scheme]
        kwargs["tls"] = parts.scheme == "mqtts" or ca_file is not None
        url_user = unquote(parts.username) if parts.username else None
        url_pass = unquote(parts.password) if parts.password is not None else None
        kwargs["username"] = username if username is not None else url_user
        kwargs["password"] = password if password is not None else url_pass
        if ca_file is not None:
            kwargs["ca_file"] = ca_file
        if station is not None:
            kwargs["station"] = station
        if prefix is not None:
            kwargs["prefix"] = prefix
        return cls(**kwargs)

    @classmethod
    def from_env(
        cls,
        *,
        url: str | None = None,
        ca_file: str | None = None,
        prefix: str | None = None,
        station: str | None = None,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> MqttSettings:
        """Settings from arguments, falling back to the ``LABRIG_MQTT_*`` environment."""
        env = os.environ if environ is None else environ
        url = url or env.get("LABRIG_MQTT_URL") or "mqtt://127.0.0.1:1883"
        # Credentials written in the URL win; the environment only fills them in.
        has_user = "@" in url.partition("://")[2]
        return cls.from_url(
            url,
            ca_file=ca_file or env.get("LABRIG_MQTT_CA") or None,
            prefix=prefix or env.get("LABRIG_MQTT_PREFIX") or None,
            station=station,
            username=None if has_user else env.get("LABRIG_MQTT_USERNAME") or None,
            password=None if has_user else env.get("LABRIG_MQTT_PASSWORD") or None,
            **options,
        )
