"""Keithley 2450 source-measure unit as a galvanostat over VISA (SCPI).

``K2450Channel.from_url("visa://TCPIP::10.0.0.7::5025::SOCKET")``, then
``async with ch: await ch.set_limits(...); await ch.start_block(...)``. Blocks run
host-side; the instrument's voltage compliance is the hardware guard (see
:mod:`.channel`). :mod:`.codec` holds the pure command builders and reply parsers.
"""

from .channel import K2450Channel

__all__ = ["K2450Channel"]
