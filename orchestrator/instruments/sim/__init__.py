"""The simulated station: the only orchestrator code that reaches ``labrig.simulators``.

- :mod:`.cell`: one simulated cell per position, shared by its cycler channel, impedance
  channel and chamber;
- :mod:`.inprocess`: capability adapters over in-process simulators (``sim``,
  ``sim-eis``, ``sim-chamber``: the quickest dry run, no wire);
- one module per instrument family: starts its wire-level simulator on loopback (on the
  running loop, so it shares the virtual clock) for ``--sim``, and what
  ``labrig sim serve`` starts; the lab's driver then connects to it;
- :mod:`.station`: the ``--sim`` source of instruments for a position.

The family modules are named by the registry's table, which the hardware path loads
too: they import ``labrig.simulators`` inside their functions only, so opening the lab's
instruments never imports a simulator.
"""
