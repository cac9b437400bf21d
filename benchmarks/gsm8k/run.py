"""Networks of small models against big ones, on what 19 real models really answered (GSM8K).

Every figure here is REPLAYED FROM RECORDED OUTPUTS: each model's answer to each of the 1,319
GSM8K test questions is the one ZeroEval recorded when it ran that model (greedy, zero-shot;
``../shared/data/gsm8k-zeroeval``). Single models are asked through one model call each, with
ZeroEval's own prompt; networks run through Rede's real runtime (bus, registry, orchestrator,
agreement routing), one run per question, with the same prompt as their request. Cost is the
token count estimated from the recorded text (4 characters a token) at the list prices of
``models.yaml`` (each with its source); a network's prompts include Rede's agent template, so
its calls cost a little more than the bare single-model calls.

    python benchmarks/gsm8k/run.py                      # all 19 models and every policy
    python benchmarks/gsm8k/run.py --limit 100          # a quick look
    python benchmarks/gsm8k/run.py --write              # also table.md, results.json, chart
    python benchmarks/gsm8k/run.py --report             # redraw those from results.json

Each system's raw results go to ``--out`` (default ``benchmarks/out/gsm8k``), one folder each,
with the network's YAML beside its ``summary.json``: ``rede bench gsm8k --network
<out>/<policy>/network.yaml --data ...`` reruns any row alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rede.evals.datasets import GSM8K
from rede.evals.qa import QASummary, run_qa
from rede.evals.systems import ModelSystem, NetworkSystem, System
from rede.models import Price
from rede.models.replay import ReplayModel

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SMALL_MAX_B = 9.0
""""Small": at most this many billion parameters."""


@dataclass(frozen=True)
class Policy:
    name: str
    what: str
    tiers: list[dict[str, Any]]
    on_disagreement: str = "escalate"

    @property
    def members(self) -> list[str]:
        return [a for tier in self.tiers for a in tier["agents"]]


SMALL2 = ["gemma-2-9b", "llama31-8b"]
"""The two best recorded models of at most 9B parameters, by their own published score."""
SMALL3 = [*SMALL2, "qwen2-7b"]
"""...and the third best."""

POLICIES = [
    Policy(
        "majority-3-small",
        "3 small models vote; most votes wins",
        [{"agents": SMALL3, "min_agree": 2}],
        "majority",
    ),
    Policy(
        "majority-5-small",
        "5 small models vote; most votes wins",
        [{"agents": [*SMALL3, "phi35-mini", "llama-3-8b"], "min_agree": 3}],
        "majority",
    ),
    Policy(
        "agree2-70b",
        "2 small agree, else Llama-3.1-70B",
        [{"agents": SMALL2, "min_agree": 2}, {"agents": ["llama31-70b"]}],
    ),
    Policy(
        "agree2of3-70b",
        "2 of 3 small agree, else Llama-3.1-70B",
        [{"agents": SMALL3, "min_agree": 2}, {"agents": ["llama31-70b"]}],
    ),
    Policy(
        "sequential2of3-70b",
        "as agree2of3-70b, the third asked only on a split",
        [{"agents": SMALL3, "min_agree": 2, "mode": "sequential"}, {"agents": ["llama31-70b"]}],
    ),
    Policy(
        "cheap-pair-70b",
        "Phi-3.5-mini and Qwen2-7B agree, else Llama-3.1-70B",
        [{"agents": ["phi35-mini", "qwen2-7b"], "min_agree": 2}, {"agents": ["llama31-70b"]}],
    ),
    Policy(
        "agree2-gpt4o",
        "2 small agree, else GPT-4o",
        [{"agents": SMALL2, "min_agree": 2}, {"agents": ["gpt-4o"]}],
    ),
    Policy(
        "agree2of3-gpt4o",
        "2 of 3 small agree, else GPT-4o",
        [{"agents": SMALL3, "min_agree": 2}, {"agents": ["gpt-4o"]}],
    ),
    Policy(
        "ladder-gpt4o",
        "2 small agree, else two 70Bs agree, else GPT-4o",
        [
            {"agents": SMALL2, "min_agree": 2},
            {"agents": ["llama31-70b", "qwen2-72b"], "min_agree": 2},
            {"agents": ["gpt-4o"]},
        ],
    ),
]


def catalogue() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((HERE / "models.yaml").read_text())["models"]  # type: ignore[no-any-return]


def price(entry: dict[str, Any]) -> dict[str, float]:
    return {"input_per_1k": entry["input"] / 1000, "output_per_1k": entry["output"] / 1000}


def network_yaml(policy: Policy, models: dict[str, dict[str, Any]], data: Path) -> dict[str, Any]:
    return {
        "name": policy.name,
        "description": f"{policy.what} (replayed from recorded outputs)",
        "models": {
            m: {"spec": f"replay:{data / 'outputs' / models[m]['file']}", "price": price(models[m])}
            for m in policy.members
        },
        "agents": [{"name": m, "capabilities": ["solve"], "model": m} for m in policy.members],
        "routing": {
            "agreement": {
                "solve": {
                    "answer": "json_number",
                    "tiers": policy.tiers,
                    "on_disagreement": policy.on_disagreement,
                }
            }
        },
        "limits": {"step_retries": 0, "max_steps": 10},
    }


async def measure(system: System, bench: GSM8K, out: Path, limit: int | None) -> QASummary:
    try:
        return await run_qa(system, bench, out=out, limit=limit, concurrency=16, progress=False)
    finally:
        await system.aclose()


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    data = args.data.resolve()
    bench = GSM8K(data)
    models = catalogue()
    rows: list[dict[str, Any]] = []
    for key, entry in models.items():
        model = ReplayModel.from_path(
            data / "outputs" / entry["file"], name=key, price=Price(**price(entry))
        )
        started = time.perf_counter()
        s = await measure(ModelSystem(model), bench, args.out / key, args.limit)
        rows.append(row(key, "single", key, s, time.perf_counter() - started, entry))
        print(f"{key:16s} {s.accuracy:6.2f}%  ${s.cost_usd_per_task:.6f}", flush=True)
    for policy in POLICIES:
        folder = args.out / policy.name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "network.yaml"
        path.write_text(yaml.safe_dump(network_yaml(policy, models, data), sort_keys=False))
        started = time.perf_counter()
        s = await measure(NetworkSystem(path), bench, folder, args.limit)
        rows.append(row(policy.name, "network", policy.what, s, time.perf_counter() - started))
        print(
            f"{policy.name:16s} {s.accuracy:6.2f}%  ${s.cost_usd_per_task:.6f}  "
            f"{s.calls_per_task:.2f} calls  {s.escalated_pct:.1f}% escalated",
            flush=True,
        )
    return rows


def row(
    name: str,
    kind: str,
    what: str,
    s: QASummary,
    wall_s: float,
    entry: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "system": name,
        "kind": kind,
        "what": what,
        "params_b": (entry or {}).get("params_b"),
        "accuracy": round(s.accuracy, 2),
        "n": s.n,
        "errors": s.errors,
        "cost_usd_per_task": s.cost_usd_per_task,
        "calls_per_task": round(s.calls_per_task, 3),
        "escalated_pct": round(s.escalated_pct, 1),
        "tokens_per_task": round(s.tokens_per_task, 1),
        "by_agent": {a: f.calls_per_task for a, f in s.by_agent.items()}
        if kind == "network"
        else {},
        "wall_s": round(wall_s, 1),
    }


def goals(rows: list[dict[str, Any]]) -> list[str]:
    by = {r["system"]: r for r in rows}
    out: list[str] = []
    big, net = by.get("llama31-70b"), by.get("agree2-70b")
    if big and net:
        met = net["accuracy"] >= big["accuracy"] and net["escalated_pct"] <= 20
        out.append(
            f"- **Small models escalating to a 70B, against Llama-3.1-70B alone "
            f"({big['accuracy']:.2f}%)**: `agree2-70b` scores {net['accuracy']:.2f}% with "
            f"{net['escalated_pct']:.1f}% of questions escalated (goal: at least the 70B's "
            f"accuracy with at most 20% escalated): **{'met' if met else 'not met'}**. It costs "
            f"{net['cost_usd_per_task'] / big['cost_usd_per_task']:.2f}x the 70B alone."
        )
    gpt = by.get("gpt-4o")
    for name in ("agree2-gpt4o", "agree2of3-gpt4o", "ladder-gpt4o"):
        r = by.get(name)
        if not (gpt and r):
            continue
        gap = gpt["accuracy"] - r["accuracy"]
        share = r["cost_usd_per_task"] / gpt["cost_usd_per_task"]
        met = gap <= 0.5 and share <= 0.25
        out.append(
            f"- **`{name}` against GPT-4o alone ({gpt['accuracy']:.2f}%)**: {r['accuracy']:.2f}% "
            f"({abs(gap):.2f} points {'below' if gap > 0 else 'above'}) at {100 * share:.0f}% "
            "of its cost (goal: within 0.5 "
            f"points at no more than 25%): **{'met' if met else 'not met'}**."
        )
    return out


def markdown(rows: list[dict[str, Any]], limit: int | None) -> str:
    gpt = next((r for r in rows if r["system"] == "gpt-4o"), None)
    lines = [
        "| system | kind | accuracy % | $ / 1k questions | vs GPT-4o cost | calls / question "
        "| escalated % |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: -r["accuracy"]):
        what = r["what"] if r["kind"] == "network" else f"single ({r['params_b'] or '?'}B)"
        if r["params_b"] is None and r["kind"] == "single":
            what = "single (closed)"
        versus = f"{r['cost_usd_per_task'] / gpt['cost_usd_per_task']:.0%}" if gpt else ""
        name = f"**{r['system']}**" if r["kind"] == "network" else r["system"]
        lines.append(
            f"| {name} | {what} | {r['accuracy']:.2f} | {1000 * r['cost_usd_per_task']:.3f} | "
            f"{versus} | {r['calls_per_task']:.2f} | "
            f"{r['escalated_pct']:.1f} |"
        )
    n = rows[0]["n"] if rows else 0
    head = f"GSM8K test, {n} questions" + (f" (first {limit})" if limit else "")
    return f"{head}; replayed from recorded outputs.\n\n" + "\n".join(lines) + "\n"


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy against cost: every system (left), and the top of the range zoomed (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frontier, best = [], -1.0
    for r in sorted(rows, key=lambda r: r["cost_usd_per_task"]):
        if r["accuracy"] > best:
            frontier.append(r)
            best = r["accuracy"]
    zoom_y = (89.5, 96.8)
    fig, axes = plt.subplots(1, 2, figsize=(14, 6.5), width_ratios=[1, 1.4])
    for ax, zoomed in zip(axes, (False, True), strict=True):
        for r in rows:
            x, y = 1000 * r["cost_usd_per_task"], r["accuracy"]
            network = r["kind"] == "network"
            small = (r["params_b"] or 999) <= SMALL_MAX_B
            color = "tab:red" if network else "tab:green" if small else "tab:gray"
            ax.scatter(x, y, color=color, zorder=3 if network else 2, s=28)
            inside = zoom_y[0] <= y <= zoom_y[1]
            if zoomed == inside:
                ax.annotate(
                    r["system"],
                    (x, y),
                    fontsize=7,
                    color=color if network else "black",
                    xytext=(4, -9 if network else 3),
                    textcoords="offset points",
                )
        ax.plot([1000 * r["cost_usd_per_task"] for r in frontier],
                [r["accuracy"] for r in frontier], "--", color="tab:blue", lw=1,
                label="accuracy/cost frontier")  # fmt: skip
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.set_xlabel("USD per 1,000 questions (list prices; tokens estimated from the text)")
        if zoomed:
            ax.set_ylim(*zoom_y)
            ax.set_title("the top of the range (labels for the points in it)", fontsize=10)
            ax.legend(loc="lower right")
        else:
            ax.set_ylabel("GSM8K accuracy % (1,319 questions)")
            ax.set_title("every system (green: single <=9B, grey: larger single, red: network)",
                         fontsize=10)  # fmt: skip
    fig.suptitle("REPLAYED from recorded outputs: 19 real models' GSM8K answers (ZeroEval); "
                 "Rede networks run over them")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/gsm8k-zeroeval")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/gsm8k")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument(
        "--write", action="store_true", help="write RESULTS.md, results.json and frontier.png"
    )
    parser.add_argument(
        "--report", action="store_true", help="only redraw the table and chart from results.json"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    if args.report:
        rows = json.loads((HERE / "results.json").read_text())
        args.write = True
    else:
        rows = asyncio.run(main(args))
    table = markdown(rows, args.limit)
    checks = "\n".join(goals(rows))
    print("\n" + table + "\n" + checks)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.write:
        if not args.report:
            (HERE / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
        chart(rows, HERE / "frontier.png")
        (HERE / "table.md").write_text(table + "\n" + checks + "\n")
        print(f"wrote {HERE / 'results.json'}, {HERE / 'frontier.png'}, {HERE / 'table.md'}")
    if any(r["errors"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    cli()
