"""Side-by-side benchmark: Rede against AutoGen, LangGraph and CrewAI on the same workflow.

    python benchmarks/peers/run.py                 # everything, ~4 minutes
    python benchmarks/peers/run.py --frameworks rede,langgraph --n 5

Run it with the project's Python (it needs ``rede`` for the model server and matplotlib for
the chart). It installs the peers into their own venv (``setup.sh``, once), starts one local
OpenAI-compatible server per model latency (0 ms and ``--latency-ms``) in this process with
the deterministic model of :mod:`workflow`, runs every framework's workflow ``--n`` times per
latency, in rounds that take the frameworks in turn, each framework in its own subprocess,
then writes ``RESULTS.md``, ``results.json`` and ``chart.png``. Every task uses its own API
key, so the server counts each task's requests and tokens. Nothing is reported that this run
did not measure: a framework that failed to install or to run is reported with its error.

Metrics, medians over the tasks (min and max beside them):

- overhead per agent hop, 0 ms model: (wall time - server latency x requests) / hops, where
  a hop is one call of a workflow agent (planner, researcher, writer, critic);
- end-to-end latency with the ``--latency-ms`` model, and its ratio to the critical path of
  the model calls the framework made: latency x (planner calls + the larger of the two
  researchers' calls + writer calls + critic calls);
- prompt tokens, completion tokens and requests per task, as the server counted them;
- peak RSS of the framework's process (``ru_maxrss``, imports and all tasks included).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from report import draw_chart, machine, write_results  # noqa: E402
from results import ALL, LABELS, PEERS, Outcome, summarise, task_record  # noqa: E402
from workflow import classify, respond  # noqa: E402

PEERS_VENV = HERE / ".venv"
CHILD_ENV = {
    # Only loopback traffic: anything that tries another host through a proxy-aware client
    # hits a closed local port; telemetry and version checks are switched off.
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
    "OTEL_SDK_DISABLED": "true",
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_DISABLE_TRACKING": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "CREWAI_DISABLE_VERSION_CHECK": "true",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "ANONYMIZED_TELEMETRY": "False",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_TRACING": "false",
    "REDE_LOOPBACK_ONLY": "1",
    "PYTHONUNBUFFERED": "1",
}


# --------------------------------------------------------------------------- the servers


class Server:
    """A loopback model server with the workflow's deterministic model, and when each
    request was answered (to tell whether the researchers ran at the same time)."""

    def __init__(self, latency_s: float) -> None:
        from rede.testing.openai_server import FakeOpenAIServer

        self.latency_s = latency_s
        self.answered: dict[int, float] = {}
        self.fake = FakeOpenAIServer(
            latency_s=latency_s, responder=self._respond, model="bench-model", keep_requests=200_000
        )

    def _respond(self, request: dict[str, Any]) -> str:
        self.answered[id(request)] = time.perf_counter()
        return respond(request)

    def __enter__(self) -> Server:
        self.fake.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.fake.stop()

    @property
    def base_url(self) -> str:
        return self.fake.base_url

    def take(self) -> tuple[dict[str, dict[str, int]], dict[str, list[dict[str, Any]]]]:
        """Counters and classified requests per API key since the last take; then reset."""
        stats = self.fake.stats()["clients"]
        calls: dict[str, list[dict[str, Any]]] = {}
        for received in list(self.fake.requests):
            role, branch = classify(received.body)
            calls.setdefault(received.api_key, []).append(
                {"role": role, "branch": branch, "at": self.answered.get(id(received.body))}
            )
        self.fake.reset_stats()
        self.answered.clear()
        return stats, calls


# --------------------------------------------------------------------------- running


def python_for(name: str) -> Path:
    """Rede runs in the project's interpreter; the peers and the no-framework baseline in the
    peers' venv, so the baseline's floor is measured with the same ``openai`` as theirs."""
    return Path(sys.executable) if name == "rede" else PEERS_VENV / "bin" / "python"


def ensure_peers(mode: str) -> str | None:
    """Install the peers' venv if needed; the error text when it cannot be had."""
    python = PEERS_VENV / "bin" / "python"
    if mode == "never" or (mode == "auto" and python.exists()):
        return None if python.exists() else f"no peers venv at {PEERS_VENV} (--setup never)"
    print(f"installing the peers into {PEERS_VENV} (setup.sh) ...", flush=True)
    proc = subprocess.run(
        ["bash", str(HERE / "setup.sh"), sys.executable],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = [ln for ln in proc.stderr.splitlines() if not ln.startswith("WARNING: Location")]
        return f"setup.sh exited {proc.returncode}: " + "\n".join(tail[-15:])
    return None


def run_round(
    out: Outcome, servers: dict[str, Server], args: argparse.Namespace, round_no: int, n: int
) -> None:
    """One subprocess per model latency, ``n`` measured tasks each; results go into ``out``
    (a failure sets its status and error)."""
    env = {**os.environ, **CHILD_ENV}
    env.pop("OPENAI_API_KEY", None)
    name = out.name
    for label, server in servers.items():
        with tempfile.TemporaryDirectory() as tmp:
            report_path = Path(tmp) / "report.json"
            cmd = [
                str(python_for(name)),
                str(HERE / "harness.py"),
                "--framework",
                name,
                "--base-url",
                server.base_url,
                "--key-prefix",
                f"{name}-{label}-r{round_no}",
                "--n",
                str(n),
                "--warmup",
                str(args.warmup),
                "--out",
                str(report_path),
            ]
            print(f"  round {round_no + 1}  {LABELS[name]:<28} {label:>6} model ...", end=" ")
            started = time.perf_counter()
            try:
                proc = subprocess.run(
                    cmd,
                    cwd=tmp,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=args.timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                server.take()
                out.status = "failed"
                out.error = f"timed out after {args.timeout:g}s with the {label} model"
                print("timed out", flush=True)
                return
            stats, calls = server.take()
            if not report_path.exists():
                out.status = "failed"
                out.error = f"the harness exited {proc.returncode} without a report"
                out.detail = (proc.stderr or proc.stdout)[-3000:]
                print("failed", flush=True)
                return
            report = json.loads(report_path.read_text())
        print(f"{report['status']} ({time.perf_counter() - started:.1f}s)", flush=True)
        out.style = report.get("style", out.style)
        out.versions = report.get("versions", out.versions)
        if report.get("peak_rss_kb") is not None:
            out.peak_rss_kb = max(out.peak_rss_kb or 0, int(report["peak_rss_kb"]))
        if report.get("rss_after_import_kb") is not None:
            out.rss_after_import_kb = max(
                out.rss_after_import_kb or 0, int(report["rss_after_import_kb"])
            )
        if report.get("import_s") is not None:
            out.import_s = min(out.import_s or float("inf"), float(report["import_s"]))
        if report["status"] != "ok":
            out.status, out.error = "failed", report.get("error")
            out.detail = report.get("traceback")
            return
        out.tasks.setdefault(label, []).extend(
            task_record(run, stats.get(run["key"], {}), calls.get(run["key"], []), server.latency_s)
            for run in report["runs"]
        )
    out.status = "ok"


def run_all(
    names: list[str], servers: dict[str, Server], args: argparse.Namespace, peers_error: str | None
) -> dict[str, Outcome]:
    """Every framework, round after round (frameworks interleaved, so that a slow phase of the
    machine does not land on one framework alone); a framework that fails is not run again."""
    outcomes = {name: Outcome(name) for name in names}
    for name in names:
        if name in PEERS and peers_error is not None:
            outcomes[name].status, outcomes[name].error = "not installed", peers_error
    rounds = min(args.rounds, args.n)
    for round_no in range(rounds):
        n = args.n // rounds + (1 if round_no < args.n % rounds else 0)
        for name in names:
            out = outcomes[name]
            if out.status in ("failed", "not installed"):
                continue
            run_round(out, servers, args, round_no, n)
    return outcomes


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="measured tasks per framework/latency")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="split the tasks into rounds that run every framework in turn",
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="unmeasured tasks first in every subprocess"
    )
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the slow model's latency")
    parser.add_argument(
        "--frameworks",
        default=",".join(ALL),
        help=f"comma-separated, from: {', '.join(ALL)}",
    )
    parser.add_argument(
        "--setup",
        choices=("auto", "always", "never"),
        default="auto",
        help="install the peers' venv: when missing (auto), always, or never",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per subprocess")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for RESULTS.md and chart")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.frameworks.split(",") if n.strip()]
    unknown = set(names) - set(ALL)
    if unknown or not names:
        parser.error(f"unknown framework(s) {', '.join(sorted(unknown))}; known: {', '.join(ALL)}")
    if args.n < 1 or args.rounds < 1 or args.warmup < 0 or args.latency_ms <= 0:
        parser.error("--n and --rounds must be at least 1, --latency-ms above 0")

    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    command = shlex.join([_display_python(), _display_path(Path(__file__)), *sys.argv[1:]])
    peers_error = ensure_peers(args.setup) if set(names) & set(PEERS) else None
    lat = f"{args.latency_ms:g}ms"
    with Server(0.0) as fast, Server(args.latency_ms / 1000) as slow:
        outcomes = run_all(names, {"0ms": fast, lat: slow}, args, peers_error)
    summaries = {n: summarise(o, lat) for n, o in outcomes.items() if o.status == "ok"}

    args.out.mkdir(parents=True, exist_ok=True)
    chart_name = "chart.png"
    chart_error = draw_chart(args.out / chart_name, outcomes, summaries, lat)
    write_results(
        args.out / "RESULTS.md",
        outcomes,
        summaries,
        args,
        command,
        started,
        time.perf_counter() - t0,
        None if chart_error else chart_name,
    )
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "command": command,
                "started": started.isoformat(),
                "machine": machine(),
                "args": {k: str(v) for k, v in vars(args).items()},
                "frameworks": {
                    name: {
                        "status": o.status,
                        "error": o.error,
                        "style": o.style,
                        "versions": o.versions,
                        "peak_rss_kb": o.peak_rss_kb,
                        "rss_after_import_kb": o.rss_after_import_kb,
                        "import_s": o.import_s,
                        "summary": summaries.get(name),
                        "tasks": o.tasks,
                    }
                    for name, o in outcomes.items()
                },
            },
            indent=1,
        )
    )
    print(f"wrote {args.out / 'RESULTS.md'}" + (f"; {chart_error}" if chart_error else ""))
    return 0 if all(o.status == "ok" for o in outcomes.values()) else 1


def _display_python() -> str:
    exe = Path(sys.executable)
    return _display_path(exe) if exe.is_relative_to(ROOT) else str(exe)


def _display_path(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


if __name__ == "__main__":
    raise SystemExit(main())
