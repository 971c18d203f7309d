"""After a restart, the cycler's limits read back and compared with the protocol's.

At the start of a run the executor writes the protocol's voltage window and current limit
into the channel and reads them back. A resumed run writes nothing while a block may be
running: :func:`check_resumed_limits` reads back what the channel holds and compares it
with the protocol's limits (the same tolerance as at the start). A difference stops the
run: :class:`LimitsChanged` is an instrument error, so the executor ends the run
``failed`` with the channel in its safe state and the difference in its reason.

What the channel holds, by driver:

- a figure the instrument holds and answers (the 2450's voltage compliance, the
  simulated channels' whole envelope) is compared;
- a figure read back as NaN is supervised by the host (the 2450's lower voltage and its
  current limit): nothing held it while the host was down, so it is written again from
  the protocol when the channel is idle;
- a channel that cannot say (:class:`~drivers.capabilities.LimitsUnknown`: MacNet has no
  call that reads safety limits back) is written again and read back when it is idle;
  while its test is active the tester refuses any change of its safety limits (so the
  ones written and read back at the start still hold). Either way the run goes on with
  a ``notify`` event that says which of the two checks was done.
"""

from __future__ import annotations

import logging
import math

from labrig.drivers.capabilities import (
    ChannelLimits,
    ChannelState,
    CyclerChannel,
    InstrumentError,
    LimitMismatch,
)
from labrig.protocols.models import SafetyLimits

__all__ = ["LimitsChanged", "check_resumed_limits", "limit_differences", "wanted_limits"]

_FIELDS = (("v_min_V", "lower voltage", "V"), ("v_max_V", "upper voltage", "V"),
           ("i_max_A", "current limit", "A"))  # fmt: skip
_ACTIVE = (ChannelState.running, ChannelState.paused)

log = logging.getLogger(__name__)


class LimitsChanged(LimitMismatch):
    """The channel holds other limits than the protocol's after a restart."""


def wanted_limits(limits: SafetyLimits) -> ChannelLimits | None:
    """The channel limits a protocol asks for (None: it sets none, e.g. a furnace run)."""
    if limits.voltage_V is None or limits.current_abs_A is None:
        return None
    return ChannelLimits(limits.voltage_V[0], limits.voltage_V[1], limits.current_abs_A)


def limit_differences(wanted: ChannelLimits, got: ChannelLimits) -> list[str]:
    """Each figure the channel holds (not NaN) that differs from ``wanted``, in words."""
    out: list[str] = []
    for name, words, unit in _FIELDS:
        have, want = getattr(got, name), getattr(wanted, name)
        if math.isnan(have):
            continue  # supervised by the host: nothing held it while the host was down
        if not _close(have, want):
            out.append(f"{words} {have:g} {unit} (the protocol's: {want:g} {unit})")
    return out


def _close(a: float, b: float, rel: float = 1e-3, abs_: float = 1e-6) -> bool:
    """Equal within the tolerance :meth:`ChannelLimits.matches` applies at the start."""
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


async def check_resumed_limits(cycler: CyclerChannel, limits: SafetyLimits) -> list[str]:
    """Compare the limits ``cycler`` holds after a restart with the protocol's ``limits``.

    Returns notes for the run's events (only when the limits could not be read back; a
    successful read-back adds no event, so a resumed run's story is the uninterrupted
    one's); raises :class:`LimitsChanged` when a figure the
    channel holds differs (the run must stop in its safe state)."""
    wanted = wanted_limits(limits)
    if wanted is None:
        return []
    try:
        got = await cycler.get_limits()
    except InstrumentError as exc:  # LimitsUnknown, or a driver that holds none yet
        return await _unknown(cycler, wanted, str(exc))
    differ = limit_differences(wanted, got)
    if differ:
        raise LimitsChanged(
            f"{cycler.name}: after the restart the channel holds other limits than the "
            f"protocol's: {'; '.join(differ)}; the run stops here (they were changed "
            "while the run was down: check the instrument, then start the run again)"
        )
    held = ", ".join(w for name, w, _ in _FIELDS if not math.isnan(getattr(got, name)))
    log.info("%s: limits read back after the restart: %s as the protocol's", cycler.name, held)
    if any(math.isnan(getattr(got, name)) for name, _, _ in _FIELDS):
        await _write_again(cycler, wanted)
        log.info("%s: host-supervised limits armed again from the protocol", cycler.name)
    return []


async def _unknown(cycler: CyclerChannel, wanted: ChannelLimits, why: str) -> list[str]:
    """The channel cannot say which limits it holds: the note says which check was done
    instead of a read-back."""
    status = await cycler.status()
    if status.state in _ACTIVE:
        return [
            f"limits kept from the start: the channel's test is {status.state.value} and "
            "the tester refuses limit changes while it is, so those written and read back "
            f"at the start still hold; not read back after the restart ({why})"
        ]
    await _write_again(cycler, wanted)
    log.info("%s: limits written again after the restart, read back as the protocol's",
             cycler.name)  # fmt: skip
    held = ", ".join(f"{w} {getattr(wanted, n):g} {u}" for n, w, u in _FIELDS)
    return [
        f"limits written again after the restart: the channel was {status.state.value} and "
        f"cannot say which limits it holds, so the protocol's ({held}) were written and the "
        f"channel's answer to that write compared: as the protocol's ({why})"
    ]


async def _write_again(cycler: CyclerChannel, wanted: ChannelLimits) -> None:
    await cycler.set_limits(wanted)
    got = await cycler.get_limits()
    differ = limit_differences(wanted, got)
    if differ:
        raise LimitsChanged(
            f"{cycler.name}: limits written again after the restart read back as "
            f"{'; '.join(differ)}"
        )
