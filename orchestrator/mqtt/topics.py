"""The topic layout under a station prefix, built and parsed in one place.

```
<prefix>/station                      retained JSON station description
<prefix>/orchestrator/state           retained "online" / "offline" (last will)
<prefix>/<channel>/status             retained JSON RunStatus
<prefix>/<channel>/events             QoS 1 JSON Event
<prefix>/<channel>/telemetry          QoS 0 JSON Telemetry
<prefix>/<channel>/cmd/<command>      pause | resume | abort (operators write)
<prefix>/<channel>/cmd/reply          QoS 1 JSON reply to a command
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["COMMANDS", "RESERVED_CHANNELS", "Topics", "channel_level"]

COMMANDS = ("pause", "resume", "abort")
# Names that would collide with the station-level topics.
RESERVED_CHANNELS = frozenset({"orchestrator", "station"})
_UNSAFE = re.compile(r"[/+#\x00-\x1f]")


def channel_level(channel: str) -> str:
    """A channel name made safe as one topic level ('/', '+', '#' become '_')."""
    safe = _UNSAFE.sub("_", channel)
    return safe if safe else "_"


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names for one station prefix (e.g. ``labrig/rig-a``)."""

    prefix: str

    @property
    def station(self) -> str:
        return f"{self.prefix}/station"

    @property
    def state(self) -> str:
        return f"{self.prefix}/orchestrator/state"

    def status(self, channel: str) -> str:
        return f"{self.prefix}/{channel_level(channel)}/status"

    def events(self, channel: str) -> str:
        return f"{self.prefix}/{channel_level(channel)}/events"

    def telemetry(self, channel: str) -> str:
        return f"{self.prefix}/{channel_level(channel)}/telemetry"

    def command(self, channel: str, command: str) -> str:
        return f"{self.prefix}/{channel_level(channel)}/cmd/{command}"

    def reply(self, channel: str) -> str:
        return f"{self.prefix}/{channel_level(channel)}/cmd/reply"

    @property
    def command_filter(self) -> str:
        """The subscription that receives every command addressed to this station."""
        return f"{self.prefix}/+/cmd/+"

    def parse_command_topic(self, topic: str) -> tuple[str, str] | None:
        """``(channel_level, command_word)`` of a command topic under this prefix, or None.

        The command word is returned unchecked (``reply`` included) so the caller can tell
        its own replies from unknown commands.
        """
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        rest = topic[len(head) :].split("/")
        if len(rest) != 3 or rest[1] != "cmd" or not rest[0]:
            return None
        return rest[0], rest[2]
