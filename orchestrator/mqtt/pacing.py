"""Per-channel rate limiting of telemetry (pure; time is passed in)."""

from __future__ import annotations

__all__ = ["Pacer"]


class Pacer:
    """Admits about one message per ``interval_s`` per key, on a grid.

    A reading may come up to ``slack`` (10 %) of an interval early against its slot,
    so a producer at exactly the limit is not halved by jitter; the grid advances one
    interval per admitted message, so over any long stretch a key gets at most one
    message per interval (plus one).
    """

    def __init__(self, interval_s: float, slack: float = 0.1) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval must be > 0 s, got {interval_s}")
        self.interval_s = interval_s
        self._early = slack * interval_s
        self._due: dict[str, float] = {}

    def admit(self, key: str, now: float) -> bool:
        due = self._due.get(key)
        if due is not None and now < due - self._early:
            return False
        if due is None or now - due >= self.interval_s:
            self._due[key] = now + self.interval_s  # first, or idle a while: new grid
        else:
            self._due[key] = due + self.interval_s
        return True
