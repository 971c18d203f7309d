"""One run: the instruments bound to it and the lifecycle every kind of run shares."""

from .bindings import Booking, RunBindings

__all__ = ["Booking", "RunBindings"]
