"""``RESULTS.md`` and ``chart.png`` from one run's outcomes. Every number written comes from
the outcomes passed in, that is from what this run measured; what was not measured is
written as ``n/m`` or as the framework's error."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
from pathlib import Path
from typing import Any

from results import (
    GOAL_LATENCY_RATIO,
    GOAL_OVERHEAD_FACTOR,
    GOAL_TOKEN_SHARE,
    GROUP_CHAT,
    LABELS,
    PEERS,
    Outcome,
    call_floor,
    call_noise,
    describe_net,
    net_overhead,
)
from workflow import ROLES


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
    }


def fmt(value: tuple[float, float, float] | None, scale: float = 1.0, digits: int = 1) -> str:
    """``median (min-max)`` of a measured spread, or a dash when nothing was measured."""
    if value is None:
        return "n/m"
    med, lo, hi = (v * scale for v in value)
    if lo == hi:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def describe_calls(summary: dict[str, Any]) -> str:
    calls = summary["calls"]
    if not calls:
        return "n/m"
    parts = [f"{role} {calls[role]}" for role in (*ROLES, "other") if calls[role]]
    text = ", ".join(parts)
    if summary["calls_vary"]:
        text += " (varies)"
    return text


def verdict(met: bool) -> str:
    return "**Met.**" if met else "**Not met.**"


def goals(
    outcomes: dict[str, Outcome], summaries: dict[str, dict[str, Any]], lat_label: str
) -> list[str]:
    """The three goals, judged on this run's medians; a goal without data says so."""
    rede = summaries.get("rede")
    if rede is None:
        return ["- Rede was not measured in this run: no goal can be judged."]
    lines: list[str] = []
    peers_ok = [p for p in PEERS if p in summaries]
    base = summaries.get("baseline")
    floor = call_floor(summaries)

    overhead = rede["overhead_per_hop_s"]
    peer_overheads = {
        p: summaries[p]["overhead_per_hop_s"][0]
        for p in peers_ok
        if summaries[p]["overhead_per_hop_s"] is not None
    }
    if overhead is None or not peer_overheads:
        lines.append("- Overhead per hop: not judged (no peer was measured in this run).")
    else:
        fastest = min(peer_overheads, key=lambda p: peer_overheads[p])
        factor = peer_overheads[fastest] / overhead[0]
        lines.append(
            f"- Overhead per hop at least {GOAL_OVERHEAD_FACTOR:g}x lower than the fastest peer "
            f"({LABELS[fastest]}, {peer_overheads[fastest] * 1000:.2f} ms): Rede "
            f"{overhead[0] * 1000:.2f} ms, {factor:.1f}x lower. "
            f"{verdict(factor >= GOAL_OVERHEAD_FACTOR)}"
        )
        rede_net = net_overhead(rede, floor)
        peer_net = {p: net_overhead(summaries[p], floor) for p in peer_overheads}
        if rede_net is not None and floor is not None:
            fastest_net = min(peer_net, key=lambda p: peer_net[p] or 0.0)
            theirs = peer_net[fastest_net]
            noise = call_noise(summaries)
            text = (
                f"  Net of the HTTP call (the baseline's {floor * 1000:.2f} ms per call in this "
                f"run): Rede {describe_net(rede, floor, noise)} per hop, the fastest peer "
                f"({LABELS[fastest_net]}) {describe_net(summaries[fastest_net], floor, noise)}"
            )
            rede_noise = (noise or 0.0) * rede["requests"][0] / rede["hops"][0]
            peer = summaries[fastest_net]
            peer_noise = (noise or 0.0) * peer["requests"][0] / peer["hops"][0]
            if theirs is None or theirs <= peer_noise:
                text += "; the peer's net is within noise, so no ratio can be judged."
            elif rede_net > rede_noise:
                met = theirs / rede_net >= GOAL_OVERHEAD_FACTOR
                text += f", {theirs / rede_net:.1f}x lower. {verdict(met)}"
            else:
                text += "; Rede's net is within noise: far below the peer's. **Met.**"
            lines.append(text)
    ratio = rede["latency_ratio"]
    if ratio is None:
        lines.append("- End-to-end latency vs critical path: not measured.")
    else:
        text = (
            f"- End-to-end latency within {GOAL_LATENCY_RATIO:g}x of the critical path "
            f"({lat_label} model): Rede {ratio[0]:.3f}x. {verdict(ratio[0] <= GOAL_LATENCY_RATIO)}"
        )
        if base and base["latency_ratio"] is not None:
            text += (
                f" For reference, the hand-written baseline (no framework): "
                f"{base['latency_ratio'][0]:.3f}x."
            )
        lines.append(text)
    tokens = rede["prompt_tokens"]
    group = [p for p in GROUP_CHAT if p in peers_ok and summaries[p]["prompt_tokens"]]
    if tokens is None or not group:
        lines.append("- Prompt tokens vs group-chat peers: not judged (none measured).")
    for peer in group:
        theirs = summaries[peer]["prompt_tokens"][0]
        share = tokens[0] / theirs
        lines.append(
            f"- Prompt tokens per task at most {GOAL_TOKEN_SHARE:.0%} of the group-chat peer "
            f"{LABELS[peer]} ({theirs:.0f}): Rede {tokens[0]:.0f}, {share:.0%}. "
            f"{verdict(share <= GOAL_TOKEN_SHARE)}"
        )
    return lines


def write_results(
    path: Path,
    outcomes: dict[str, Outcome],
    summaries: dict[str, dict[str, Any]],
    args: argparse.Namespace,
    command: str,
    started: dt.datetime,
    elapsed_s: float,
    chart: str | None,
) -> None:
    lat = f"{args.latency_ms:g}ms"
    env = machine()
    measured = [n for n, o in outcomes.items() if o.status == "ok"]
    per_call = call_floor(summaries)

    lines = [
        "# Rede against AutoGen, LangGraph and CrewAI: one workflow, side by side",
        "",
        "Generated by `benchmarks/peers/run.py`; every number below was measured in the run "
        "described here. A framework that could not be installed or run is listed with its "
        "error instead of numbers.",
        "",
        f"- Command: `{command}`",
        f"- Run: {started:%Y-%m-%d %H:%M} UTC, {elapsed_s:.0f} s; {args.n} measured tasks per "
        f"framework and model latency, in {min(args.rounds, args.n)} round(s) that run every "
        f"framework in turn, each framework in its own subprocess per round and latency, "
        f"after {args.warmup} warm-up task(s) in each subprocess.",
        f"- Machine: {env['cpu']}, {env['cores']} cores, {env['memory']} memory, {env['os']}, "
        f"Python {env['python']}.",
        "- Model: a local OpenAI-compatible server on 127.0.0.1 "
        "(`rede.testing.openai_server`) with a deterministic responder "
        "(`benchmarks/peers/workflow.py`), at 0 ms and at "
        f"{args.latency_ms:g} ms per call; each task used its own API key, so every count below "
        "is the server's. Tokens are the server's estimate (characters / 4), the same rule for "
        "every framework.",
        "",
        "Workflow: a planner splits the request into two sub-questions; two researchers answer "
        "one each; a writer drafts from both findings; a critic asks for one revision; the "
        "writer revises; the critic approves (where the framework loops); the revision is the "
        "final answer.",
        "",
        "## Results",
        "",
        "Medians over the tasks, (min-max) beside them. n/m: not measured.",
        "",
        "| framework | overhead / hop, 0 ms model (ms) | end-to-end, "
        f"{lat} model (ms) | critical path (ms) | ratio to critical path | prompt tokens / task "
        "| completion tokens / task | requests / task | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, out in outcomes.items():
        if out.status != "ok":
            lines.append(f"| {LABELS[name]} | {out.status} (see below) | | | | | | | |")
            continue
        s = summaries[name]
        rss = f"{out.peak_rss_kb / 1024:.0f}" if out.peak_rss_kb else "n/m"
        lines.append(
            f"| {LABELS[name]} | {fmt(s['overhead_per_hop_s'], 1000, 2)} | "
            f"{fmt(s['e2e_s'], 1000)} | {fmt(s['critical_path_s'], 1000, 0)} | "
            f"{fmt(s['latency_ratio'], 1, 3)} | {fmt(s['prompt_tokens'], 1, 0)} | "
            f"{fmt(s['completion_tokens'], 1, 0)} | {fmt(s['requests'], 1, 0)} | {rss} |"
        )
    lines += [
        "",
        "What each framework ran (model calls per task by role, from the server's log):",
        "",
        "| framework | how the workflow is written | calls per task | researchers in parallel "
        f"({lat} model) | final answer is the revision |",
        "|---|---|---|---|---|",
    ]
    for name, out in outcomes.items():
        if out.status != "ok":
            continue
        s = summaries[name]
        lines.append(
            f"| {LABELS[name]} | {out.style} | {describe_calls(s)} | "
            f"{s['researchers_overlapped'] or 'n/m'} | {s['final_is_revision']} |"
        )

    lines += ["", "## Goals", "", *goals(outcomes, summaries, lat), ""]
    if per_call is not None:
        lines += [
            "The 0 ms model still costs an HTTP round trip per call: the baseline (the same "
            "workflow hand-written with the `openai` SDK and asyncio, no framework) took "
            f"{per_call * 1000:.2f} ms per call in this run, and every framework's overhead per "
            "hop above includes such calls. Net of them (overhead per hop - that cost x "
            "requests / hops):",
            "",
        ]
        noise = call_noise(summaries)
        for name in measured:
            if name != "baseline":
                lines.append(f"- {LABELS[name]}: {describe_net(summaries[name], per_call, noise)}")
        lines.append("")

    failures = [(n, o) for n, o in outcomes.items() if o.status != "ok"]
    if failures:
        lines += ["## Frameworks without numbers", ""]
        for name, out in failures:
            lines.append(f"- **{LABELS[name]}**: {out.status}. {out.error or ''}")
            if out.detail:
                lines += [
                    "",
                    "  ```",
                    *("  " + ln for ln in out.detail.strip().splitlines()[-12:]),
                    "  ```",
                ]
        lines.append("")

    lines += ["## Versions", ""]
    for name, out in outcomes.items():
        if out.versions:
            pins = ", ".join(f"{k} {v}" for k, v in out.versions.items())
            lines.append(f"- {LABELS[name]}: {pins}")
    lines += [
        "",
        "## Definitions",
        "",
        "- Hop: one model call by a workflow agent (planner, researcher, writer, critic), "
        "classified from the prompt by the server's responder; framework calls outside these "
        "roles count as `other` and are not hops.",
        "- Overhead per hop: (wall time of a task - server latency x requests) / hops, with the "
        "0 ms model. Wall time runs from the request to the final answer; building the agents, "
        "graph, crew or network for the task happens before the clock starts.",
        "- Critical path: server latency x (planner calls + the larger of the two researchers' "
        "calls + writer calls + critic calls), from the calls the framework actually made. "
        "A framework that runs the researchers one after the other pays one more model latency "
        "than its critical path, and calls outside the workflow's roles (`other`: AutoGen's "
        "speaker selection) are not on it either, so both show in the ratio.",
        "- Peak RSS: `ru_maxrss` of the framework's own process (imports, the server's clients "
        "and all tasks included; the model server runs in the parent process).",
        "- Each framework is written as its documentation writes such a workflow; see "
        "`benchmarks/peers/peer_*.py` and `rede_workflow.yaml`.",
    ]
    if chart:
        lines += ["", f"![chart]({chart})"]
    path.write_text("\n".join(lines) + "\n")


SHORT = {
    "baseline": "no framework",
    "rede": "Rede",
    "autogen": "AutoGen\nGraphFlow",
    "autogen_selector": "AutoGen\nSelector",
    "langgraph": "LangGraph",
    "crewai": "CrewAI",
}


def draw_chart(
    path: Path, outcomes: dict[str, Outcome], summaries: dict[str, dict[str, Any]], lat: str
) -> str | None:
    """A PNG with one panel per metric; the error text when it cannot be drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"chart not drawn: {exc}"
    panels = [
        ("overhead_per_hop_s", 1000, "overhead per agent hop, 0 ms model (ms)", "%.2f"),
        ("latency_ratio", 1, f"end-to-end / critical path, {lat} model", "%.2f"),
        ("prompt_tokens", 1, "prompt tokens per task", "%.0f"),
        ("peak_rss", 1 / 1024, "peak RSS of the process (MiB)", "%.0f"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (key, scale, title, label_fmt) in zip(axes.flat, panels, strict=True):
        xs, meds, lows, highs, colors = [], [], [], [], []
        for name in summaries:
            if key == "peak_rss":
                rss = outcomes[name].peak_rss_kb
                if rss is None:
                    continue
                med = lo = hi = rss * scale
            else:
                value = summaries[name][key]
                if value is None:
                    continue
                med, lo, hi = (v * scale for v in value)
            xs.append(SHORT[name])
            meds.append(med)
            lows.append(med - lo)
            highs.append(hi - med)
            colors.append({"baseline": "#9e9e9e", "rede": "#d62728"}.get(name, "#1f77b4"))
        bars = ax.bar(xs, meds, yerr=[lows, highs], capsize=3, color=colors)
        ax.bar_label(bars, fmt=label_fmt, fontsize=8, label_type="center", color="white")
        if key == "latency_ratio":
            ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
            ax.axhline(GOAL_LATENCY_RATIO, color="#d62728", linewidth=0.8, linestyle=":")
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle("One workflow, one local model server: medians, bars from min to max", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None
