"""Sub-commands of ``labrig``: one module per area, each with ``register(app)``."""
