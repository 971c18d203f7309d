"""Open a transport from its URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ._base import Transport
from ._serial import SerialTransport
from ._tcp import TcpTransport
from ._visa import VisaTransport

__all__ = ["serial_settings", "transport_from_url"]

_PYSERIAL_SCHEMES = {"socket", "rfc2217", "loop", "spy", "hwgrep", "alt"}
_SERIAL_INT = {"baudrate", "bytesize"}


def serial_settings(url: str) -> tuple[str, dict[str, Any]]:
    """``serial:///dev/ttyUSB0?baudrate=9600&parity=E`` -> ``("/dev/ttyUSB0", {...})``.

    Settings are pyserial's (``baudrate``, ``bytesize``, ``parity``, ``stopbits``).
    """
    scheme, _, rest = url.partition("://")
    if scheme.lower() != "serial":
        raise ValueError(f"transport URL {url!r}: expected serial:///dev/ttyX")
    path, _, query = rest.partition("?")
    if not path:
        raise ValueError(f"transport URL {url!r}: expected serial:///dev/ttyX")
    settings: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=False):
        if key not in (*_SERIAL_INT, "stopbits", "parity"):
            raise ValueError(f"transport URL {url!r}: unknown serial setting {key!r}")
        if key == "parity":
            settings[key] = value.upper()
            continue
        try:
            settings[key] = int(value) if key in _SERIAL_INT else float(value)
        except ValueError:
            raise ValueError(f"transport URL {url!r}: {key}={value!r} is not a number") from None
    return path, settings


def transport_from_url(url: str, **kwargs: Any) -> Transport:
    """A (not yet open) transport for ``url``.

    - ``tcp://host:port``
    - ``serial:///dev/ttyUSB0?baudrate=9600&parity=N`` (also pseudo-terminals)
    - any pyserial URL: ``socket://host:port``, ``rfc2217://...``, ``loop://``
    - ``visa://TCPIP::127.0.0.1::5025::SOCKET`` (``?backend=@py`` is the default)

    ``kwargs`` go to the transport (``timeout``, ``manipulators``, ``backoff``).
    Raises ``ValueError`` naming what is wrong with the URL.
    """
    if "://" not in url:
        raise ValueError(f"transport URL {url!r} has no scheme (tcp://, serial://, visa://)")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme == "tcp":
        parts = urlsplit(url)
        if not parts.hostname or parts.port is None:
            raise ValueError(f"transport URL {url!r}: expected tcp://host:port")
        return TcpTransport(parts.hostname, parts.port, **kwargs)
    if scheme == "serial":
        path, settings = serial_settings(url)
        return SerialTransport(path, **settings, **kwargs)
    if scheme in _PYSERIAL_SCHEMES:
        return SerialTransport(url, **kwargs)
    if scheme == "visa":
        resource, _, query = rest.partition("?")
        opts = dict(parse_qsl(query))
        if not resource:
            raise ValueError(f"transport URL {url!r}: expected visa://<VISA resource>")
        return VisaTransport(resource, backend=opts.get("backend", "@py"), **kwargs)
    raise ValueError(f"transport URL {url!r}: unknown scheme {scheme!r}")
