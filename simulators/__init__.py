"""Simulated instruments: physics models and wire-level servers.

- :mod:`simulators.cell`: the simulated battery cell (equivalent circuit, OCV, impedance,
  presets) and the step runner.
- :mod:`simulators.engine`: :class:`~simulators.engine.ChannelEngine`, the firmware of one
  cycler channel on a simulated cell; wire-level cycler/potentiostat simulators and the
  in-process adapter run their procedures on it.

Nothing is imported here so that using one simulator does not load the others.
This package never imports ``drivers``, ``orchestrator`` or ``protocols``.
"""
