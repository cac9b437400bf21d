"""The chaos soak in small (``benchmarks/chaos.py``): 50 runs over the embedded Valkey with
4 agent processes and 2 orchestrators, while an agent process is SIGKILLed, Redis is killed
and restarted, and an orchestrator is SIGKILLed and restarted. Nothing may be lost, no run
answered twice, and every model call paid twice must be explained by a fault."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_small_chaos_soak_loses_nothing_and_answers_once(tmp_path: Path) -> None:
    out = tmp_path / "chaos"
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    args = ["--runs", "50", "--agents", "4", "--kill-every", "1.5", "--redis-restarts", "1",
            "--outage-s", "2", "--orchestrator-kills", "1", "--concurrency", "16",
            "--deadline-s", "60", "--out", str(out)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "chaos.py"), *args],
        env=env, capture_output=True, text=True, timeout=85,
    )  # fmt: skip
    assert (out / "summary.json").exists(), done.stdout + done.stderr
    s = json.loads((out / "summary.json").read_text())
    report = done.stdout + json.dumps(s, indent=1)
    assert s["faults"]["agent_kills"] >= 1, report
    assert s["faults"]["redis_restarts"] == 1, report
    assert s["faults"]["orchestrator_kills"] == 1, report
    assert s["runs_submitted"] == 50, report
    assert s["lost"] == 0, report
    assert s["answered_twice"] == 0, report
    assert s["ok"] == 50, report
    assert s["model_calls_paid_twice"] <= s["model_calls_paid_twice_explained"], report
