"""The demo network on SmolLM2-135M served by llama.cpp's server, through ``rede run
--base-url``, on three different requests in a row: does each run end ``ok`` with a plan that
was valid on the first call and a recorded critique?

Run (about 2-4 minutes on 2 cores):
    PYTHONPATH=src python benchmarks/real_demo_check.py
Exit status 0 when all three pass. The model is weak: this checks the path, not the answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import smollm  # noqa: E402
from rede.cli.app import demo_network_path  # noqa: E402

REQUESTS = (
    "Compare Redis Streams and Apache Kafka as the event backbone for a small team's order "
    "pipeline, and recommend one",
    "Compare Python and Go for writing a small web service, and recommend one",
    "Explain the pros and cons of SQLite and PostgreSQL for a mobile app's backend",
)


def run(url: str, request: str, ledger: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "rede", "run", str(demo_network_path()), request]
    command += ["--base-url", url, "--model", "smollm2", "--json", "--ledger", str(ledger)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=400, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    if not done.stdout.strip():
        return {"status": f"no record (exit {done.returncode}): {done.stderr[-300:]}"}
    record: dict[str, Any] = json.loads(done.stdout)
    return record


def verdict(record: dict[str, Any]) -> tuple[bool, str]:
    names = [d["name"] for d in record.get("decisions", [])]
    plan = next((d for d in record.get("decisions", []) if d["name"] == "plan"), {})
    first_plan_ok = plan.get("source") == "planner" and not {"plan_invalid", "plan_fallback"} & set(
        names
    )
    critiques = sum(len(s["critiques"]) for s in record.get("steps", []))
    steps = [
        f"{s['id']}:{s['capability']}<-{','.join(s['depends_on']) or '-'}"
        for s in record.get("steps", [])
        if s.get("kind") == "step"
    ]
    ok = record.get("status") == "ok" and first_plan_ok and critiques > 0
    return ok, (
        f"status {record.get('status')}, first plan valid {first_plan_ok}, critiques "
        f"{critiques}, wall {record.get('wall_time_s', 0):.1f} s, plan {' '.join(steps)}"
    )


def main() -> int:
    print("real model, SmolLM2-135M, weak: llama.cpp's server, rede run --base-url", flush=True)
    passed = 0
    with smollm.server(smollm.model_path(), threads=2) as url, tempfile.TemporaryDirectory() as d:
        for i, request in enumerate(REQUESTS, 1):
            ok, line = verdict(run(url, request, Path(d) / "ledger.db"))
            passed += ok
            print(f"{i}. {'PASS' if ok else 'FAIL'} {request[:60]!r}: {line}", flush=True)
    print(f"{passed} passed, {len(REQUESTS) - passed} failed")
    return 0 if passed == len(REQUESTS) else 1


if __name__ == "__main__":
    sys.exit(main())
