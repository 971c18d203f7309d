"""MQTT status monitoring and remote control for labrig runs.

- :class:`MqttPublisher` - the run's MQTT sink (an ``EventSink``) and command receiver.
- :class:`Outbox` - durable store of events waiting for the broker.
- :class:`MqttSettings` - broker URL, credentials, TLS, prefix; from a URL or environment.
- :class:`StationDescription`, :class:`InstrumentInfo` - the retained station message.
- :class:`CommandRecord` - audit record of a remote command (becomes an Event).
- :func:`open_publisher_for_run`, :func:`attach_executor` - wiring for one run.
- :class:`Topics` - the topic layout. JSON Schemas: :mod:`orchestrator.mqtt.schemas`.

The topic layout, payloads and broker setup are documented in ``docs/mqtt.md``.
"""

from .outbox import Outbox
from .payloads import CommandRecord, InstrumentInfo, StationDescription
from .publisher import CommandAudit, CommandHandler, MqttPublisher, PublisherStats
from .runs import attach_executor, open_publisher_for_run, station_description
from .settings import MqttConfigError, MqttSettings
from .topics import COMMANDS, Topics

__all__ = [
    "COMMANDS",
    "CommandAudit",
    "CommandHandler",
    "CommandRecord",
    "InstrumentInfo",
    "MqttConfigError",
    "MqttPublisher",
    "MqttSettings",
    "Outbox",
    "PublisherStats",
    "StationDescription",
    "Topics",
    "attach_executor",
    "open_publisher_for_run",
    "station_description",
]
