"""The mixed workload's two charts: accuracy against cost, and accuracy per domain."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TITLE = "REPLAYED from recorded outputs (ZeroEval): mixed GSM8K + MATH-L5 + CRUXEval, test split"
SHOWN = ["llama31-70b", "llama31-405b", "gpt-4o", "gpt-4o-mini", "gemma-2-9b",
         "agree2-70b", "mix-routed-70b", "mix-routed-gpt4o"]  # fmt: skip


def frontier_chart(rows: list[dict[str, Any]], path: Path, small: Callable[..., bool]) -> None:
    full = [r for r in rows if r["kind"] != "single (no GSM8K)"]
    frontier, best = [], -1.0
    for r in sorted(full, key=lambda r: r["cost_usd_per_1k"]):
        if r["accuracy"] > best:
            frontier.append(r)
            best = r["accuracy"]
    fig, ax = plt.subplots(figsize=(11, 6.5))
    for r in full:
        x, y = r["cost_usd_per_1k"], r["accuracy"]
        routed, net = r["kind"] == "routed", r["kind"] == "network"
        little = small({"params_b": r["params_b"]})
        color = (
            "tab:red" if routed else "tab:orange" if net else "tab:green" if little else "tab:gray"
        )
        ax.scatter(x, y, color=color, s=36 if routed else 24, zorder=3)
        ax.annotate(r["system"], (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.plot([r["cost_usd_per_1k"] for r in frontier], [r["accuracy"] for r in frontier],
            "--", color="tab:blue", lw=1, label="accuracy/cost frontier")  # fmt: skip
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.set_xlabel("USD per 1,000 questions (list prices; tokens estimated from the text)")
    ax.set_ylabel("accuracy % on the mixed test split")
    ax.set_title("red: routed specialist networks, orange: networks without a dispatcher, "
                 "green: single <=9B, grey: larger single", fontsize=9)  # fmt: skip
    ax.legend(loc="lower right")
    fig.suptitle(TITLE, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def domain_chart(rows: list[dict[str, Any]], path: Path) -> None:
    by = {r["system"]: r for r in rows}
    shown = [by[s] for s in SHOWN if s in by] + [
        by[s] for s in ("qwen25-7b", "claude-35-sonnet") if s in by
    ]
    domains = [("gsm8k", "GSM8K"), ("math", "MATH level 5"), ("crux", "CRUXEval")]
    fig, ax = plt.subplots(figsize=(12, 5.5))
    width = 0.8 / len(shown)
    palette = [c for i, c in enumerate(plt.get_cmap("tab20").colors) if i not in (6, 7)]  # no reds
    for i, r in enumerate(shown):
        xs = [k + i * width for k in range(len(domains))]
        ys = [r["domains"].get(d, 0.0) for d, _ in domains]
        color = "tab:red" if r["kind"] == "routed" else palette[i % len(palette)]
        bars = ax.bar(xs, ys, width, label=r["system"], color=color,
                      alpha=1.0 if r["kind"] == "routed" else 0.75)  # fmt: skip
        if r["system"] == "mix-routed-gpt4o":
            for bar in bars:
                bar.set_hatch("//")
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(domains))], [n for _, n in domains])
    ax.set_ylabel("accuracy % (test split)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    ax.set_title("per domain (Qwen2.5-7B and Claude 3.5 Sonnet: no GSM8K recording, shown as 0)",
                 fontsize=9)  # fmt: skip
    fig.suptitle(TITLE, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
