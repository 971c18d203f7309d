"""Hardware openers: one module per instrument family, each with the driver's typed
options and an opener that builds the lab's driver from a station entry's address.

The same openers connect to the wire-level simulators in a dry run. Drivers are imported
inside the openers, so loading a station file does not import every driver.
"""
