"""The CLI a user expects: ``--version``, ``-h``, flags shown as flags, ``validate``,
``init``, ``runs``; and ``rede serve`` as a real process: it answers curl-like requests, and
SIGTERM lets a running run finish and be recorded before the process exits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from typer.testing import CliRunner

from rede import __version__
from rede.cli import app
from rede.server.live import free_port
from serve_support import DEMO_YAML, sse_events

runner = CliRunner()


def test_version_and_short_help() -> None:
    assert runner.invoke(app, ["--version"]).output.strip() == f"rede {__version__}"
    helped = runner.invoke(app, ["-h"])
    assert helped.exit_code == 0
    for command in ("serve", "validate", "init", "runs", "--install-completion"):
        assert command in helped.output


def test_boolean_options_are_flags_and_every_option_has_help() -> None:
    for command in ("demo", "run", "trace", "serve", "runs", "validate", "init", "up", "agent"):
        out = runner.invoke(app, [command, "-h"], terminal_width=200).output
        assert "<bool>" not in out, command
        # every option line carries help text after its name and type
        for line in out.splitlines():
            if line.startswith("│ --") and "--help" not in line:
                assert len(line.split()) > 3, f"{command}: {line}"


def test_serve_refuses_an_open_non_loopback_address(monkeypatch) -> None:
    monkeypatch.delenv("REDE_API_KEYS", raising=False)
    refused = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--ledger", ""])
    assert refused.exit_code == 1
    assert "serving on 0.0.0.0 needs an API key" in refused.output


def test_validate_checks_without_running(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["validate", str(DEMO_YAML)])
    # rich wraps at 80 columns, wherever the checkout path's length puts a break
    assert ok.exit_code == 0 and "network 'research-team', 7 agents" in " ".join(ok.output.split())
    as_json = json.loads(runner.invoke(app, ["validate", str(DEMO_YAML), "--json"]).output)
    assert "plan" in as_json["capabilities"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "models: {m: {spec: 'sim:7b'}}\n"
        "agents:\n  - {name: a, capabilities: [x], model: m, prompts: {x: missing.txt}}\n"
    )
    failed = runner.invoke(app, ["validate", str(bad)])
    # rich wraps the message at 80 columns, wherever the temporary path's length puts a break
    assert failed.exit_code == 1 and "cannot read prompt file" in " ".join(failed.output.split())


def test_init_writes_a_network_that_validates_and_runs(tmp_path: Path) -> None:
    made = runner.invoke(app, ["init", str(tmp_path / "net"), "--name", "starter"])
    assert made.exit_code == 0, made.output
    network = tmp_path / "net" / "network.yaml"
    assert (tmp_path / "net" / "prompts" / "write.txt").exists()
    assert runner.invoke(app, ["validate", str(network)]).exit_code == 0
    again = runner.invoke(app, ["init", str(tmp_path / "net")])
    assert again.exit_code == 1 and "--force" in again.output
    ledger = tmp_path / "ledger.db"
    ran = runner.invoke(
        app, ["run", str(network), "What is 2+2?", "--fast", "--ledger", str(ledger)]
    )
    assert ran.exit_code == 0, ran.output
    listed = json.loads(runner.invoke(app, ["runs", "--ledger", str(ledger), "--json"]).output)
    assert len(listed) == 1 and listed[0]["request"] == "What is 2+2?"
    table = runner.invoke(app, ["runs", "--ledger", str(ledger)], terminal_width=200).output
    assert listed[0]["id"] in table


def test_serve_process_answers_and_sigterm_lets_a_run_finish(tmp_path: Path) -> None:
    network = tmp_path / "one.yaml"
    network.write_text(
        "name: one\nmodels:\n  m: {spec: 'sim:7b', seed: 1, time_scale: 2.0}\n"
        "agents:\n  - {name: answerer, capabilities: [answer], model: m}\n"
    )
    ledger = tmp_path / "ledger.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rede",
            "serve",
            str(network),
            "--port",
            str(port),
            "--ledger",
            str(ledger),
            "--no-access-log",
            "--shutdown-timeout",
            "30",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "REDE_API_KEYS": ""},
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the server says where it listens, then starts
            if "Application startup complete" in line:
                break
        health = httpx.get(f"{base}/healthz").json()
        assert health["networks"] == ["one"] and health["status"] == "ok"
        run_id = httpx.post(f"{base}/v1/runs", json={"input": "Say hello"}).json()["id"]
        with httpx.stream("GET", f"{base}/v1/runs/{run_id}/events") as r:
            for ev in sse_events(r):
                if ev.get("event") == "step_started":
                    break  # the model call is under way
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once it has shut down gracefully
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    listed = runner.invoke(app, ["runs", "--ledger", str(ledger), "--json"])
    (served,) = json.loads(listed.output)  # the run as the ledger recorded it
    assert served["id"] == run_id and served["status"] == "ok" and served["answer"]


def test_serve_on_redis_uses_agents_served_by_another_process(
    tmp_path: Path, redis_server_factory
) -> None:
    import openai

    from rede import Network
    from rede.server import ServerSettings, create_app
    from rede.server.live import LiveServer

    redis = redis_server_factory()
    network = tmp_path / "two.yaml"
    network.write_text(
        "name: two\nmodels:\n  m: {spec: 'sim:7b', seed: 1, time_scale: 0}\n"
        "agents:\n  - {name: answerer, capabilities: [answer], model: m}\n"
        "  - {name: calculator, capabilities: [arithmetic], tool: arithmetic}\n"
        "bus: {keys: keys}\n"  # per-agent identities: `rede keys init keys --network two.yaml`
    )
    made = CliRunner().invoke(
        app, ["keys", "init", str(tmp_path / "keys"), "--network", str(network)]
    )
    assert made.exit_code == 0, made.output
    agents = subprocess.Popen(
        [sys.executable, "-m", "rede", "agent", str(network), "--bus", redis.url],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        net = Network.from_yaml(network, bus=redis.url).serve_only(set())
        port = free_port()
        with LiveServer(create_app([net], ServerSettings(port=port)), port=port) as live:
            client = openai.OpenAI(base_url=live.url + "/v1", api_key="-", max_retries=0)
            reply = client.chat.completions.create(
                model="two", messages=[{"role": "user", "content": "What is 6*7?"}]
            )
            assert reply.choices[0].message.content == "6*7 = 42"
            agents_seen = httpx.get(f"{live.url}/v1/networks/two").json()["agents"]
            assert all(a["healthy"] for a in agents_seen)
    finally:
        agents.terminate()
        agents.wait(timeout=30)
