"""The web app over real HTTP (uvicorn on loopback, httpx): sign-in and CSRF, the run API,
downloads, the report, and the seam for the lab database."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
from typer.testing import CliRunner

from labrig.orchestrator.cli import app as cli

from .support import serving, sign_in, web_config


def _audit(runs: Path) -> list[dict[str, Any]]:
    path = runs.parent / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_nothing_answers_without_sign_in_and_viewers_command_nothing(
    finished_run: tuple[Path, str],
) -> None:
    runs, run_id = finished_run
    async with serving(web_config(runs, None)) as url, httpx.AsyncClient(base_url=url) as c:
        r = await c.get("/runs/" + run_id)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Fruns")
        for path in ("/api/lab", "/api/runs", f"/api/runs/{run_id}/download/csv", "/api/queue"):
            assert (await c.get(path)).status_code == 401, path
        assert (await c.get("/static/run.js")).status_code == 303
        assert (await c.get("/static/app.css")).status_code == 200  # the sign-in page's style
        page = await c.get("/login")
        assert page.status_code == 200 and "sign in" in page.text
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        bad = await c.post("/login", data={"csrf": csrf, "username": "vera", "password": "nope"})
        assert bad.status_code == 401 and "Wrong name or password" in bad.text
        token = await sign_in(c, "vera")
        me = (await c.get("/api/me")).json()
        assert me["role"] == "viewer" and me["can_command"] is False
        cookie = c.cookies.jar
        assert any(k.name == "labrig_session" for k in cookie)
        home = await c.get("/")
        assert "script-src 'self'" in home.headers["content-security-policy"]
        assert home.headers["x-frame-options"] == "DENY"
        cmd = {"command": "abort", "confirm": True}
        nocsrf = await c.post(f"/api/runs/{run_id}/command", json=cmd)
        assert nocsrf.status_code == 403 and "CSRF" in nocsrf.text
        evil = {"x-csrf-token": token, "origin": "http://evil.example"}
        foreign = await c.post(f"/api/runs/{run_id}/command", json=cmd, headers=evil)
        assert foreign.status_code == 403 and "cross-origin" in foreign.text
        refused = await c.post(f"/api/runs/{run_id}/command", json=cmd,
                               headers={"x-csrf-token": token})  # fmt: skip
        assert refused.status_code == 403 and "only operators" in refused.json()["reason"]
    entries = _audit(runs)
    last = {k: entries[-1][k] for k in ("user", "action", "accepted")}
    assert last == {"user": "vera", "action": "abort", "accepted": False}
    assert any(e["action"] == "sign-in" and not e["accepted"] for e in entries)


async def test_sign_in_never_redirects_off_site(finished_run: tuple[Path, str]) -> None:
    runs, _ = finished_run
    async with serving(web_config(runs, None)) as url, httpx.AsyncClient(base_url=url) as c:
        page = await c.get("/login?next=//evil.example/x")
        assert 'name="next" value="/"' in page.text
        await sign_in(c, "olga")
        assert (await c.get("/api/me")).json()["can_command"] is True


async def test_run_api_series_cycles_events_and_impedance(finished_run: tuple[Path, str]) -> None:
    runs, run_id = finished_run
    rows = sum(pq.read_metadata(f).num_rows for f in (runs / run_id / "data").glob("part-*"))
    base = f"/api/runs/{run_id}"
    async with (
        serving(web_config(runs, None, auth=False)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as c,
    ):
        listed = (await c.get("/api/runs")).json()["runs"]
        assert [r["run_id"] for r in listed] == [run_id] and listed[0]["state"] == "finished"
        info = (await c.get(base)).json()
        assert info["protocol"] == "web-cycles" and info["t0"] > 1e9 and info["on_disk"]
        whole = (await c.get(base + "/series?n=100")).json()
        assert whole["stored"] == rows and whole["shown"] == len(whole["t"]) <= 6 * 100
        assert whole["t"] == sorted(whole["t"]) and whole["shown"] < rows
        lo, hi = whole["t_max"] * 0.25, whole["t_max"] * 0.5
        part = (await c.get(f"{base}/series?lo={lo}&hi={hi}&n=2000")).json()
        inside = [t for t in part["t"] if lo <= t <= hi]
        assert len(part["t"]) - len(inside) <= 2 and len(inside) > 10
        cycles = (await c.get(base + "/cycles")).json()["cycles"]
        assert [r["cycle"] for r in cycles] == [1, 2, 3]
        assert all(90 < r["coulombic_efficiency_pct"] < 101 for r in cycles[1:])
        events = (await c.get(base + "/events")).json()["events"]
        assert events[0]["kind"] == "run_started" and events[-1]["kind"] == "run_ended"
        later = (await c.get(base + "/events?after_seq=5")).json()["events"]
        assert [e["seq"] for e in later] == [e["seq"] for e in events if e["seq"] > 5]
        spectra = (await c.get(base + "/eis")).json()["spectra"]
        assert len(spectra) == 1
        eis = (await c.get(f"{base}/eis/{spectra[0]['name']}")).json()
        assert eis["fit"]["ok"] and len(eis["fit"]["z_real_ohm"]) == len(eis["z_real_ohm"]) > 10
        assert {p["parameter"] for p in eis["fit"]["parameters"]} >= {"R0"}
        for bad in (f"/api/runs/..%2F{run_id}/series", f"{base}/eis/..%2Fx", "/api/runs/nope"):
            assert (await c.get(bad)).status_code == 404, bad


async def test_assets_go_by_hashed_names_kept_a_year_and_the_first_answers_gzipped(
    finished_run: tuple[Path, str],
) -> None:
    runs, run_id = finished_run
    base = f"/api/runs/{run_id}"
    gz = {"accept-encoding": "gzip"}
    async with serving(web_config(runs, None)) as url, httpx.AsyncClient(base_url=url) as c:
        login = (await c.get("/login")).text
        css = re.search(r'href="(/static/app\.[0-9a-f]{10}\.css)"', login)
        assert css is not None, login
        assert (await c.get(css.group(1))).status_code == 200  # the sign-in page's style
        await sign_in(c, "vera")
        page = (await c.get("/runs/" + run_id)).text
        scripts = re.findall(r'src="(/static/[^"]+)"', page)
        assert scripts and all(re.search(r"\.[0-9a-f]{10}\.js$", s) for s in scripts), scripts
        assert re.search(r'src="/static/run-boot\.[0-9a-f]{10}\.js" data-run="' + run_id, page)
        for path in scripts:
            r = await c.get(path, headers=gz)
            assert r.status_code == 200 and r.headers["content-encoding"] == "gzip", path
            assert r.headers["cache-control"] == "private, max-age=31536000, immutable"
        plain = await c.get("/static/run.js")
        assert plain.headers["cache-control"] == "private, no-cache"
        again = await c.get("/static/run.js", headers={"if-none-match": plain.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert (await c.get("/static/run.0000000000.js")).status_code == 404
        assert (await c.get("/static/%2e%2e/app.py")).status_code == 404
        series = await c.get(base + "/series?n=300", headers=gz)
        assert series.headers["content-encoding"] == "gzip"  # httpx unzips it
        assert series.json()["live"] == [] and series.json()["shown"] == len(series.json()["t"])
        cycles = (await c.get(base + "/cycles?fields=plot")).json()
        rows = (await c.get(base + "/cycles")).json()["cycles"]
        assert cycles["count"] == 3 and cycles["columns"]["coulombic_efficiency_pct"] == [
            r["coulombic_efficiency_pct"] for r in rows
        ]
        first = (await c.get(base + "/events?limit=100")).json()
        assert first == (await c.get(base + "/events?limit=100")).json()
    async with serving(web_config(runs, None)) as url, httpx.AsyncClient(base_url=url) as c:
        for path in scripts:  # not without signing in (but the sign-in page's theme)
            assert (await c.get(path)).status_code == (200 if "/theme." in path else 303), path


async def test_downloads_and_report_hold_the_run(finished_run: tuple[Path, str]) -> None:
    runs, run_id = finished_run
    rows = sum(pq.read_metadata(f).num_rows for f in (runs / run_id / "data").glob("part-*"))
    base = f"/api/runs/{run_id}/download"
    async with (
        serving(web_config(runs, None, auth=False)) as url,
        httpx.AsyncClient(base_url=url, timeout=120) as c,
    ):
        parquet = await c.get(base + "/parquet")
        assert parquet.status_code == 200 and run_id in parquet.headers["content-disposition"]
        assert pq.read_table(io.BytesIO(parquet.content)).num_rows == rows
        csv = (await c.get(base + "/csv")).text.splitlines()
        assert csv[0].startswith('"time_s"') and len(csv) == rows + 1
        bdf = zipfile.ZipFile(io.BytesIO((await c.get(base + "/bdf-csv")).content))
        assert sorted(bdf.namelist()) == [f"{run_id}.bdf.csv", f"{run_id}.bdf.csv.metadata.json"]
        assert "Voltage / V" in bdf.read(f"{run_id}.bdf.csv").decode().splitlines()[0]
        bdfp = pq.read_table(io.BytesIO((await c.get(base + "/bdf-parquet")).content))
        assert "Voltage / V" in bdfp.column_names and bdfp.num_rows == rows
        cycles = (await c.get(base + "/cycles-csv")).text.splitlines()
        assert cycles[0].startswith("cycle,") and len(cycles) == 4
        assert (await c.get(base + "/xlsx")).status_code == 404
        report = await c.get(f"/runs/{run_id}/report")
        assert report.status_code == 200 and "Key numbers" in report.text
        assert "script-src" not in report.headers["content-security-policy"]
        assert "default-src 'none'" in report.headers["content-security-policy"]
    assert not list((runs / run_id).glob("export")), "downloads never write into the run"


def test_web_refuses_to_start_on_an_unreachable_lab_or_an_open_host(tmp_path: Path) -> None:
    url = "postgresql://web:s3cret@127.0.0.1:1/lab"  # nothing listens on port 1
    r = CliRunner().invoke(cli, ["web", "--lab", url, "--runs", str(tmp_path)])
    assert r.exit_code == 3 and "lab database" in r.output, r.output
    assert "s3cret" not in r.output  # the password never printed
    wide = CliRunner().invoke(cli, ["web", "--host", "0.0.0.0", "--runs", str(tmp_path)],
                              env={"LABRIG_WEB_USERS": ""})  # fmt: skip
    assert wide.exit_code == 2 and "without sign-in" in wide.output


def test_web_user_makes_a_users_file(tmp_path: Path) -> None:
    path = tmp_path / "users"
    r = CliRunner().invoke(cli, ["web-user", str(path), "ana", "--role", "operator",
                                 "--password-stdin"], input="a long password\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert path.stat().st_mode & 0o777 == 0o600 and "ana operator $argon2id$" in path.read_text()
    bad = CliRunner().invoke(cli, ["web-user", str(path), "ana", "--role", "root",
                                   "--password-stdin"], input="a long password\n")  # fmt: skip
    assert bad.exit_code == 2 and "role 'root'" in bad.output
