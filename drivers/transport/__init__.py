"""Byte transports for drivers: TCP, serial (pyserial URLs, pseudo-terminals) and VISA.

``transport_from_url(url)`` gives an unopened :class:`Transport`; use it as an async
context manager. Every read and write has a deadline (absolute loop time) and raises
:class:`~drivers.capabilities.InstrumentTimeout` past it, :class:`TransportClosed` when the
link is down; :meth:`Transport.reconnect` retries with exponential backoff. Fault
injection goes through *manipulators* (see :class:`Manipulator`).
"""

from ._base import Backoff, Direction, LineStream, Manipulator, Transport, TransportClosed
from ._serial import SerialTransport
from ._tcp import TcpTransport
from ._url import serial_settings, transport_from_url
from ._visa import VisaTransport

__all__ = [
    "Backoff",
    "Direction",
    "LineStream",
    "Manipulator",
    "SerialTransport",
    "TcpTransport",
    "Transport",
    "TransportClosed",
    "VisaTransport",
    "serial_settings",
    "transport_from_url",
]
