"""Lab mode: one agent per instrument PC, coordinated through PostgreSQL and MQTT.

See docs/lab.md. Nothing here is imported by `labrig run` or `labrig serve`: the database
driver and the web framework load only when an agent or a `--lab` command asks for them.
"""
