"""What the mixed-workload scripts share: the model catalogue, replayed answers, network YAMLs.

- ``catalogue()``: ``models.yaml`` (files per domain, list prices with sources).
- ``Answers``: every catalogued model's recorded reply to every question of a split, and
  what each domain's extractor reads in it; the choosing script scores pairs on dev with it.
- ``routed_network`` / ``generalist_network``: the YAML of a network, written so that
  ``rede bench mix --network`` runs it (a routed network's dispatcher is the ``dispatch``
  tool, which ``rede bench mix`` trains on dev).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rede.answers import extractor
from rede.evals.mix import DOMAINS, MixedWorkload, Split
from rede.models.replay import ReplayModel

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARED = ROOT.parent / "shared" / "data"
FOLDERS = {"gsm8k": "gsm8k-zeroeval", "math": "zeroeval-math-l5", "crux": "zeroeval-crux"}
ANSWER = {"gsm8k": "json_number", "math": "math_number", "crux": "crux_literal"}
"""Each domain's extractor: its benchmark's scoring rule, which agreement compares with."""
SMALL_MAX_B = 9.0


@functools.cache
def catalogue() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((HERE / "models.yaml").read_text())["models"]  # type: ignore[no-any-return]


def workload(data: Path = SHARED) -> MixedWorkload:
    return MixedWorkload.from_paths(*(data / FOLDERS[d] for d in DOMAINS))


def small(entry: dict[str, Any]) -> bool:
    return (entry.get("params_b") or 999) <= SMALL_MAX_B


def price(entry: dict[str, Any]) -> dict[str, float]:
    return {"input_per_1k": entry["input"] / 1000, "output_per_1k": entry["output"] / 1000}


def recording(data: Path, domain: str, entry: dict[str, Any]) -> Path:
    return data / FOLDERS[domain] / "outputs" / entry["files"][domain]


@dataclass
class Answers:
    """Per model and domain: question index -> (answer read by the domain's extractor,
    correct, estimated tokens) for one split."""

    by: dict[tuple[str, str], dict[int, tuple[str | None, bool, int]]] = field(default_factory=dict)

    @classmethod
    def read(cls, work: MixedWorkload, split: Split, data: Path = SHARED) -> Answers:
        found = cls()
        for key, entry in catalogue().items():
            for domain, _ in entry["files"].items():
                model = ReplayModel.from_path(recording(data, domain, entry))
                read = extractor(ANSWER[domain])
                table: dict[int, tuple[str | None, bool, int]] = {}
                for q in work.questions(domain, split):
                    prompt = work.benches[domain].prompt(q)
                    text = model.lookup(prompt).prediction
                    right = work.benches[domain].score(text, q).correct
                    table[q.index] = (read(text), right, (len(prompt) + len(text)) // 4)
                found.by[(key, domain)] = table
        return found

    def has(self, model: str, domain: str) -> bool:
        return (model, domain) in self.by


def routed_network(
    name: str,
    what: str,
    first: dict[str, list[str]],
    escalate: dict[str, str | None],
    replay_rel: str,
) -> dict[str, Any]:
    """A dispatcher (the ``dispatch`` tool) and, per domain, one small specialist, or two
    that must agree, else the domain's escalation model. ``replay_rel``: :data:`REPLAY`
    as the YAML's own folder reaches it. Each specialist replays its model's
    recordings of all three datasets (:data:`REPLAY`)."""
    models = catalogue()
    conf: dict[str, Any] = {
        "name": name,
        "description": f"{what} (replayed from recorded outputs)",
        "models": {},
        "agents": [{"name": "dispatcher", "tool": "dispatch", "capabilities": ["plan"]}],
        "routing": {"agreement": {}},
        "limits": {"step_retries": 0, "max_steps": 10, "plan_repairs": 0},
    }
    for domain in DOMAINS:
        big = escalate[domain]
        members = [*first[domain], *([big] if big else [])]
        for m in members:
            key = f"{domain}-{m}"
            replay_folder(m)
            conf["models"][key] = {"spec": f"replay:{replay_rel}/{m}", "price": price(models[m])}
            conf["agents"].append({"name": key, "capabilities": [domain], "model": key})
        if big is None:
            continue  # one specialist: nothing to compare
        conf["routing"]["agreement"][domain] = {
            "answer": ANSWER[domain],
            "tiers": [
                {
                    "agents": [f"{domain}-{m}" for m in first[domain]],
                    "min_agree": len(first[domain]),
                },
                {"agents": [f"{domain}-{big}"]},
            ],
        }
    return conf


REPLAY = HERE / "replay"
"""One folder per model of links to its recordings of each dataset (relative links into
``../shared/data``): the replayed model answers whatever dataset a request comes from, as
the real model did when ZeroEval ran it, so a misrouted question gets that model's answer."""


def replay_folder(key: str) -> Path:
    """The folder of links to one model's recordings (made if missing)."""
    entry = catalogue()[key]
    folder = REPLAY / key
    folder.mkdir(parents=True, exist_ok=True)
    for domain, file in entry["files"].items():
        link = folder / f"{domain}.json"
        target = Path("../../../../..") / "shared" / "data" / FOLDERS[domain] / "outputs" / file
        if not link.is_symlink():
            os.symlink(target, link)
    return folder


def generalist_network(
    name: str, what: str, tiers: list[dict[str, Any]], on_disagreement: str
) -> dict[str, Any]:
    """Models that answer every request (no dispatcher), compared as text (``json_answer``):
    the GSM8K-style cascade or a majority vote, blind to the domain."""
    models = catalogue()
    members = [a for t in tiers for a in t["agents"]]
    return {
        "name": name,
        "description": f"{what} (replayed from recorded outputs)",
        "models": {
            m: {"spec": f"replay:{replay_folder(m)}", "price": price(models[m])} for m in members
        },
        "agents": [{"name": m, "capabilities": ["solve"], "model": m} for m in members],
        "routing": {
            "agreement": {
                "solve": {
                    "answer": "json_answer",
                    "tiers": tiers,
                    "on_disagreement": on_disagreement,
                }
            }
        },
        "limits": {"step_retries": 0, "max_steps": 10},
    }
