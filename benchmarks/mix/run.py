"""Specialists against giant models on the mixed workload (GSM8K + MATH-L5 + CRUXEval), REPLAYED.

Every answer is what a real model answered when ZeroEval ran it (greedy, zero-shot;
``../shared/data``). Single models are asked once per question with ZeroEval's prompt; the
networks run through Rede's runtime (bus, registry, orchestrator, agreement), one run per
question, the prompt as the request and nothing else: no dataset label. The routed networks'
dispatcher is a naive-Bayes classifier trained on the dev split (``rede bench mix``'s); their
specialists were chosen on dev by ``choose.py``. Figures are on ``--split`` (test by default).

    python benchmarks/mix/run.py              # the table, on the test split
    python benchmarks/mix/run.py --write      # also table.md, results.json, the two charts
    python benchmarks/mix/run.py --report     # redraw those from results.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from charts import domain_chart, frontier_chart
from networks import ROOT, catalogue, generalist_network, price, replay_folder, small, workload

from rede.evals.mix import DOMAINS, MixedWorkload, records_of, run_mix
from rede.evals.mix_cli import build_system
from rede.evals.mix_summary import MixSummary
from rede.evals.systems import ModelSystem, System
from rede.models import Price
from rede.models.replay import ReplayModel

HERE = Path(__file__).resolve().parent
SINGLE = ["llama31-70b", "llama31-405b", "gpt-4o", "gpt-4o-mini", "claude-35-sonnet"]
"""The giant models of the table (every other catalogued model runs too)."""
PAIR = ["gemma-2-9b", "llama31-8b"]
"""The GSM8K benchmark's pair (the two best small models on GSM8K), blind to the domain."""
GENERALISTS = [
    ("majority-3-small", "3 small vote (no dispatcher)",
     [{"agents": [*PAIR, "qwen2-7b"], "min_agree": 2}], "majority"),
    ("majority-5-small", "5 small vote (no dispatcher)",
     [{"agents": [*PAIR, "qwen2-7b", "phi35-mini", "yi15-9b"], "min_agree": 3}], "majority"),
    ("agree2-70b", "GSM8K's cascade: 2 small agree, else Llama-3.1-70B (no dispatcher)",
     [{"agents": PAIR, "min_agree": 2}, {"agents": ["llama31-70b"]}], "escalate"),
    ("agree2-gpt4o", "GSM8K's cascade: 2 small agree, else GPT-4o (no dispatcher)",
     [{"agents": PAIR, "min_agree": 2}, {"agents": ["gpt-4o"]}], "escalate"),
]  # fmt: skip
ROUTED = {"mix-routed-70b": "llama31-70b", "mix-routed-gpt4o": "gpt-4o"}


async def measure(
    system: System, work: MixedWorkload, split: str, out: Path, domains: list[str] | None
) -> MixSummary:
    try:
        return await run_mix(
            system,
            work,
            split=split,
            out=out,
            domains=domains,
            progress=False,  # type: ignore[arg-type]
        )
    finally:
        await system.aclose()


def row(
    name: str, kind: str, what: str, s: MixSummary, wall: float, params: Any = None
) -> dict[str, Any]:
    return {
        "system": name, "kind": kind, "what": what, "params_b": params, "n": s.n,
        "accuracy": round(s.accuracy, 2),
        "domains": {d: round(f.accuracy, 2) for d, f in s.by_domain.items()},
        "domain_n": {d: f.n for d, f in s.by_domain.items()},
        "cost_usd_per_1k": round(s.cost_usd_per_1k, 4),
        "model_calls_per_task": round(s.model_calls_per_task, 3),
        "escalated_pct": round(s.escalated_pct, 1),
        "misrouted_pct": None if s.misrouted_pct is None else round(s.misrouted_pct, 2),
        "wrong_unescalated": {d: f.wrong_unescalated for d, f in s.by_domain.items()},
        "errors": s.errors, "failed_misrouted": s.failed_misrouted, "wall_s": round(wall, 1),
    }  # fmt: skip


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    work = workload()
    rows: list[dict[str, Any]] = []
    for key, entry in catalogue().items():
        model = ReplayModel.from_path(replay_folder(key), name=key, price=Price(**price(entry)))
        domains = [d for d in DOMAINS if d in entry["files"]]
        started = time.perf_counter()
        s = await measure(ModelSystem(model, max_tokens=4096), work, args.split,
                          args.out / key, None if len(domains) == 3 else domains)  # fmt: skip
        kind = "single" if len(domains) == 3 else "single (no GSM8K)"
        rows.append(row(key, kind, kind, s, time.perf_counter() - started, entry.get("params_b")))
        print(f"{key:16s} {s.accuracy:6.2f}%  ${s.cost_usd_per_1k:.3f}/1k", flush=True)
    for name, what, tiers, policy in GENERALISTS:
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "network.yaml"
        path.write_text(
            yaml.safe_dump(generalist_network(name, what, tiers, policy), sort_keys=False)
        )
        rows.append(await network_row(work, path, name, what, args))
    for name in ROUTED:
        path = ROOT / "examples" / f"{name}.yaml"
        what = yaml.safe_load(path.read_text())["description"].split(" (replayed")[0]
        rows.append(await network_row(work, path, name, what, args))
    return rows


async def network_row(
    work: MixedWorkload, path: Path, name: str, what: str, args: argparse.Namespace
) -> dict[str, Any]:
    system, _ = build_system(work, path, None)
    started = time.perf_counter()
    s = await measure(system, work, args.split, args.out / name, None)
    wall = time.perf_counter() - started
    kind = "routed" if name in ROUTED else "network"
    print(f"{name:16s} {s.accuracy:6.2f}%  ${s.cost_usd_per_1k:.3f}/1k  "
          f"{s.escalated_pct:.1f}% escalated  {wall:.1f} s", flush=True)  # fmt: skip
    return row(name, kind, what, s, wall)


def confident_wrong(rows: list[dict[str, Any]], out: Path) -> list[str]:
    """Per cascade and domain: wrong with confidence (not escalated, wrong), and what asking
    the escalation model on every unescalated question too would cost and change."""
    lines = [
        "| network | domain | questions | wrong with confidence | % of domain | +$ / 1k q to "
        "ask the big model too | it would fix | it would break |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    cascades = {**ROUTED, "agree2-70b": "llama31-70b", "agree2-gpt4o": "gpt-4o"}
    for name, big in cascades.items():
        net = {(r.task, r.index): r for r in records_of(out / name)}
        ref = {(r.task, r.index): r for r in records_of(out / big)}
        for domain in DOMAINS:
            kept = [
                r for k, r in net.items() if k[0] == domain and not r.escalated and r.error is None
            ]
            wrong = [r for r in kept if not r.correct]
            n = sum(1 for k in net if k[0] == domain)
            extra = sum(ref[(r.task, r.index)].usage.cost_usd for r in kept)
            fix = sum(ref[(r.task, r.index)].correct for r in wrong)
            brk = sum(not ref[(r.task, r.index)].correct for r in kept if r.correct)
            lines.append(
                f"| {name} | {domain} | {n} | {len(wrong)} | {100 * len(wrong) / n:.1f} | "
                f"{1000 * extra / n:.3f} | {fix} | {brk} |"
            )
    return lines


def markdown(rows: list[dict[str, Any]], split: str) -> str:
    gpt = next(r for r in rows if r["system"] == "gpt-4o")
    head = ("| system | kind | accuracy % | GSM8K % | MATH-L5 % | CRUX % | $ / 1k q "
            "| vs GPT-4o cost | model calls / q | escalated % | misrouted % |")  # fmt: skip
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: -r["accuracy"]):
        d = r["domains"]
        partial = r["kind"] == "single (no GSM8K)"
        acc = f"({r['accuracy']:.2f})" if partial else f"{r['accuracy']:.2f}"
        name = f"**{r['system']}**" if r["kind"] in ("routed", "network") else r["system"]
        what = (
            r["what"]
            if r["kind"] != "single"
            else f"single ({r['params_b'] or 'closed'}B)".replace("closedB", "closed")
        )
        mis = "" if r["misrouted_pct"] is None else f"{r['misrouted_pct']:.2f}"
        lines.append(
            f"| {name} | {what} | {acc} | {d.get('gsm8k', '—')} | {d.get('math', '—')} | "
            f"{d.get('crux', '—')} | {r['cost_usd_per_1k']:.3f} | "
            f"{r['cost_usd_per_1k'] / gpt['cost_usd_per_1k']:.0%} | "
            f"{r['model_calls_per_task']:.2f} | {r['escalated_pct']:.1f} | {mis} |"
        )
    n = gpt["domain_n"]
    return (
        f"Mixed workload, {split} split: {sum(n.values())} questions (GSM8K {n['gsm8k']}, "
        f"MATH-L5 {n['math']}, CRUXEval {n['crux']}), interleaved, no labels; REPLAYED from "
        "recorded outputs. Accuracy in brackets: a model ZeroEval did not run on GSM8K, over "
        "MATH-L5 and CRUXEval only.\n\n" + "\n".join(lines) + "\n"
    )


def goals(rows: list[dict[str, Any]]) -> list[str]:
    by = {r["system"]: r for r in rows}
    big, gpt, r70, rg = (
        by[k] for k in ("llama31-70b", "gpt-4o", "mix-routed-70b", "mix-routed-gpt4o")
    )
    met1 = r70["accuracy"] > big["accuracy"] and r70["cost_usd_per_1k"] < big["cost_usd_per_1k"]
    gap, share = gpt["accuracy"] - rg["accuracy"], rg["cost_usd_per_1k"] / gpt["cost_usd_per_1k"]
    mis = max(r70["misrouted_pct"], rg["misrouted_pct"])
    walls = max(r70["wall_s"], rg["wall_s"])
    return [
        f"- mix-routed-70b {r70['accuracy']:.2f}% at ${r70['cost_usd_per_1k']:.3f}/1k vs "
        f"Llama-3.1-70B {big['accuracy']:.2f}% at ${big['cost_usd_per_1k']:.3f}/1k: "
        f"**{'met' if met1 else 'not met'}**",
        f"- mix-routed-gpt4o {rg['accuracy']:.2f}% vs GPT-4o {gpt['accuracy']:.2f}% "
        f"({gap:+.2f} points below) at {100 * share:.0f}% of its cost (goal: within 1 point at "
        f"<= 30%): **{'met' if gap <= 1 and share <= 0.30 else 'not met'}**",
        f"- misrouted: {r70['misrouted_pct']:.2f}% of test questions (goal < 2%): "
        f"**{'met' if mis < 2 else 'not met'}**",
        f"- one routed network over the whole split: {walls:.1f} s in this script "
        "(`rede bench mix` adds start-up; goal < 3 min)",
    ]


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=["dev", "test"], default="test")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/mix")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    args.out = args.out / args.split
    if args.report:
        rows = json.loads((HERE / "results.json").read_text())
    else:
        rows = asyncio.run(main(args))
    text = markdown(rows, args.split) + "\n" + "\n".join(goals(rows)) + "\n\n"
    text += "Wrong with confidence (first tier agreed, or one specialist alone, and wrong):\n\n"
    text += "\n".join(confident_wrong(rows, args.out)) + "\n"
    print(text)
    print(f"{time.perf_counter() - started:.0f} s in all")
    if args.write or args.report:
        if not args.report:
            (HERE / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
        (HERE / "table.md").write_text(text)
        frontier_chart(rows, HERE / "frontier.png", small)
        domain_chart(rows, HERE / "domains.png")
        print(f"wrote {HERE}/results.json, table.md, frontier.png, domains.png")


if __name__ == "__main__":
    cli()
