"""Commands and submissions from the web take the paths of MQTT operators and of the
daemon's clients, so the run judges and records them; viewers command nothing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from labrig.orchestrator.mqtt import MqttSettings, attach_executor, open_publisher_for_run
from labrig.orchestrator.mqtt.testing import LocalMosquitto
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.orchestrator.station import INPROCESS_STATION
from labrig.protocols.loader import dump_protocol_yaml, load_protocol_text
from tests.helpers import run_virtual_strict

from .support import STATION, daemon, protocol_text, serving, sign_in, wait_until, web_config

LONG_CYCLING = "repeat: 2000\n    steps:\n      - Charge at 1C until 3.7 V\n      - Discharge at 1C until 2.0 V"  # noqa: E501


def _audit(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (folder / "audit.jsonl").read_text().splitlines()]


async def _virtual_run(broker: LocalMosquitto, runs: Path) -> Any:
    """A long dry run on the virtual clock in a worker thread, publishing to MQTT."""
    proto = load_protocol_text(protocol_text("web-mqtt", [LONG_CYCLING], every_s=60, cell="M1"))
    req = RunRequest(
        protocol=proto,
        protocol_yaml=dump_protocol_yaml(proto),
        out_dir=runs,
        station=INPROCESS_STATION,
    )
    settings = MqttSettings.from_url(broker.url(STATION), station=STATION)

    async def main() -> Any:
        async with open_publisher_for_run(settings, req) as pub:
            outcome, _ = await execute_run(
                req, sinks=[pub], on_executor=lambda ex: attach_executor(pub, ex)
            )
            await pub.flush(10)
            return outcome

    return await asyncio.to_thread(run_virtual_strict, main())


async def test_operator_abort_over_mqtt_is_obeyed_and_audited_viewer_refused(
    broker: LocalMosquitto, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    config = web_config(runs, broker)
    async with (
        serving(config) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as olga,
        httpx.AsyncClient(base_url=url, timeout=30) as vera,
    ):
        olga_csrf = await sign_in(olga, "olga")
        vera_csrf = await sign_in(vera, "vera")
        run = asyncio.ensure_future(_virtual_run(broker, runs))
        try:
            found: dict[str, Any] = {}

            async def running() -> bool:
                rows = (await olga.get("/api/lab")).json()["rows"]
                found.update(next((r for r in rows if r["state"] == "running"), {}))
                return bool(found)

            await wait_until(running, 60)
            run_id = found["run_id"]
            assert found["key"].startswith(f"labrig/{STATION}/") and found["cell_id"] == "M1"
            cmd = {"command": "abort", "confirm": True, "note": "cell swelling"}
            no = await vera.post(
                f"/api/runs/{run_id}/command", json=cmd, headers={"x-csrf-token": vera_csrf}
            )
            assert no.status_code == 403
            unconfirmed = await olga.post(
                f"/api/runs/{run_id}/command",
                json={"command": "abort"},
                headers={"x-csrf-token": olga_csrf},
            )
            assert unconfirmed.status_code == 400
            assert not run.done()  # neither stopped the run
            yes = await olga.post(
                f"/api/runs/{run_id}/command", json=cmd, headers={"x-csrf-token": olga_csrf}
            )
            assert yes.status_code == 200, yes.text
            assert yes.json()["accepted"] and yes.json()["via"] == "mqtt"
            outcome = await asyncio.wait_for(run, 60)
        finally:
            if not run.done():
                run.cancel()
    assert outcome.state.value == "aborted" and "olga (web)" in (outcome.reason or "")
    events = [json.loads(x) for x in (runs / run_id / "events.jsonl").read_text().splitlines()]
    (command,) = [e for e in events if e["kind"] == "command"]
    assert command["data"]["sender"] == "olga (web)" and command["data"]["accepted"] is True
    assert command["data"]["via"] == "mqtt"
    audit = _audit(tmp_path)
    assert [(e["user"], e["action"], e["accepted"]) for e in audit if e["target"] == run_id] == [
        ("vera", "abort", False),
        ("olga", "abort", True),
    ]
    assert audit[-1]["via"] == "mqtt" and audit[-1]["note"] == "cell swelling"


async def test_submit_and_remove_from_the_queue_through_the_daemon(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    config = web_config(runs, None)
    later = time.time() + 3600
    async with (
        daemon(runs, None),
        serving(config) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as olga,
        httpx.AsyncClient(base_url=url, timeout=30) as vera,
    ):
        olga_csrf = await sign_in(olga, "olga")
        vera_csrf = await sign_in(vera, "vera")
        text = protocol_text("web-queued", ["Rest for 10 s"], cell="Q1")
        body = {"protocol_yaml": text, "cell_id": "Q7", "position": "ch2", "at": later}
        no = await vera.post("/api/submit", json=body, headers={"x-csrf-token": vera_csrf})
        assert no.status_code == 403
        bad = await olga.post(
            "/api/submit",
            headers={"x-csrf-token": olga_csrf},
            json={**body, "protocol_yaml": text + "  - Charge at 9 furlongs\n"},
        )
        assert bad.status_code == 400 and "web:8:" in bad.json()["error"], bad.text
        lib = await olga.post(
            "/api/submit",
            headers={"x-csrf-token": olga_csrf},
            json={**body, "protocol_yaml": None, "protocol": "/etc/passwd"},
        )
        assert lib.status_code == 400 and "no library protocol" in lib.json()["error"]
        ok = await olga.post("/api/submit", json=body, headers={"x-csrf-token": olga_csrf})
        assert ok.status_code == 200, ok.text
        run_id = ok.json()["run_id"]
        assert ok.json()["position"] == "ch2" and "Q7" in run_id

        async def waiting() -> bool:
            q = (await olga.get("/api/queue")).json()
            job = next((j for j in q["runs"] if j["run_id"] == run_id), None)
            return bool(
                q["available"]
                and job
                and job["state"] == "waiting"
                and abs(job["not_before"] - later) < 1
            )

        await wait_until(waiting, 20)
        removed = await olga.post(
            f"/api/runs/{run_id}/command",
            headers={"x-csrf-token": olga_csrf},
            json={"command": "abort", "confirm": True},
        )
        assert removed.json() == {
            "accepted": True,
            "reason": "removed from the queue",
            "via": "daemon",
        }
        again = await olga.post(
            f"/api/runs/{run_id}/command",
            headers={"x-csrf-token": olga_csrf},
            json={"command": "abort", "confirm": True},
        )
        assert again.status_code == 409 and not again.json()["accepted"]
    actions = [
        (e["user"], e["action"], e["accepted"])
        for e in _audit(tmp_path)
        if e["action"] != "sign-in"
    ]
    assert actions == [
        ("vera", "submit", False), ("olga", "submit", False), ("olga", "submit", False),
        ("olga", "submit", True), ("olga", "abort", True), ("olga", "abort", False),
    ]  # fmt: skip
