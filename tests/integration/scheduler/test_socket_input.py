"""Every message on the daemon's control socket gets a clear reply, and nothing reaches
its log as a traceback: deep nesting, absurd times, names that are paths, wrong types."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest

from labrig.orchestrator.daemon import DaemonError, request

from .conftest import CYCLE, protocol_text
from .test_daemon import _serve, _wait_for

pytestmark = pytest.mark.timeout(90)

TEXT = protocol_text("sock", CYCLE)


def _submit(**fields: object) -> bytes:
    return json.dumps({"op": "submit", "protocol_yaml": TEXT, **fields}).encode() + b"\n"


BAD: list[tuple[bytes, str]] = [
    (b"[" * 200_000 + b"]" * 200_000 + b"\n", "nested too deeply"),
    (b'{"op": "ping", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "nested too deeply"),
    (_submit(at=1e308), "within the next ten years"),
    (_submit(at=-5), "within the next ten years"),
    (_submit(at=True), "seconds since the Unix epoch"),
    (_submit(at="tomorrow"), "seconds since the Unix epoch"),
    (b'{"op": "submit", "protocol_yaml": "x", "at": NaN}\n', ""),
    (_submit(at=float("inf")), "seconds since the Unix epoch"),
    (_submit(run_id="../escaped"), "run_id must be a name"),
    (_submit(run_id=""), "run_id must be a name"),
    (_submit(after={"x": 1}), "after must be a name"),
    (_submit(position=["ch0"]), "position must be a name"),
    (_submit(position="nowhere"), "nowhere"),
    (_submit(seed=True), "seed must be"),
    (_submit(seed=-1), "seed must be"),
    (_submit(seed=10**30), "seed must be"),
    (_submit(source=5), "source must be"),
    (json.dumps({"op": "submit", "protocol_yaml": "[" * 5000}).encode() + b"\n", ""),
    (json.dumps({"op": "submit", "protocol_yaml": 7}).encode() + b"\n", "protocol_yaml"),
    (b'{"op": ["ping"]}\n', "unknown op"),
    (b'{"op": {"a": 1}}\n', "unknown op"),
    (b'{"op": "pause", "run": {"a": 1}}\n', "needs a run id"),
    (b'{"op": "abort", "run": "nope", "sender": 5}\n', "sender"),
    (b'{"op": "events", "run": "nope", "after_seq": 1e999}\n', "after_seq"),
    (b"\xff\xfe\xfd\n", "not JSON"),
    (b"[1, 2]\n", "a message is a JSON object"),
    (b"12\n", "a message is a JSON object"),
]


def _pings(runs: Path) -> bool:
    try:
        return bool(request(runs, {"op": "ping"}).get("ok"))
    except DaemonError:
        return False


def test_every_socket_message_gets_a_clear_reply_and_no_traceback(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = _serve(runs)
    try:
        _wait_for(lambda: _pings(runs))  # the socket listens before the scheduler runs
        for line, expected in BAD:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(30)
                sock.connect(str(runs / "labrig.sock"))
                sock.sendall(line)
                reply = b""
                while not reply.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    assert chunk, f"no reply to {line[:60]!r}"
                    reply += chunk
            answer = json.loads(reply)
            assert answer["ok"] is False, (line[:60], answer)
            assert expected in answer["error"], (line[:60], answer)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(runs / "labrig.sock"))
            sock.sendall(b'{"op": "ls"}\n')
            ls = json.loads(sock.makefile("rb").readline())
        assert ls["ok"] and ls["runs"] == [], ls  # nothing was queued
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in stderr, stderr
    assert not list(runs.glob("*/run.json"))
    assert not (tmp_path / "escaped").exists()
