"""A mixed workload: GSM8K, MATH level 5 and CRUXEval questions interleaved, with no label.

Each question is sent to a system as a user would send it: ZeroEval's prompt around the
question, nothing else (its dataset is never an input; a network's dispatcher must tell the
domain from the text). Each answer is scored with its own dataset's rule.

**The split.** Every dataset is split once into ``dev`` (30 %) and ``test`` by a fixed seed
(:data:`SEED`): its questions' positions are shuffled with ``random.Random(f"{seed}:{domain}")``
and the first 30 % are dev. Choices (specialists, pairs, the classifier) are made on dev;
figures are reported on test. A split's questions are interleaved in an order shuffled with
``random.Random(f"{seed}:{split}")``. MATH level 5 keeps the questions every file of its
folder recorded (706 of 721: Llama-3.1-405B's run lacks 15), so that every model answers the
same questions.

:func:`run_mix` answers a split through a :class:`~rede.evals.systems.System`, resumable like
:func:`rede.evals.run_qa` (``OUT/<domain>.jsonl``), and writes ``OUT/summary.json`` through a
temporary file, so the folder never holds half a summary.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from rede.errors import ConfigError
from rede.evals.datasets import GSM8K, Question
from rede.evals.harness import ExampleRecord, Job, Store, answer_all
from rede.evals.mix_summary import MixSummary, summarise_mix
from rede.evals.systems import NetworkSystem, System
from rede.evals.zeroeval import Crux, MathL5
from rede.models.replay import RecordingNotFound, ReplayModel

DOMAINS = ("gsm8k", "math", "crux")
"""The workload's domains, as capabilities of a routed network."""
SEED = 18
DEV_SHARE = 0.3
Split = Literal["dev", "test"]
SPLITS: tuple[Split, ...] = ("dev", "test")


@dataclass(frozen=True, slots=True)
class MixItem:
    domain: str
    question: Question


class MixedWorkload:
    """The three datasets, split once into dev and test."""

    def __init__(
        self,
        gsm8k: GSM8K,
        math: MathL5,
        crux: Crux,
        *,
        seed: int = SEED,
        dev_share: float = DEV_SHARE,
    ) -> None:
        if not 0 < dev_share < 1:
            raise ConfigError(f"dev_share must be between 0 and 1, got {dev_share}")
        self.benches: dict[str, GSM8K | MathL5 | Crux] = {
            "gsm8k": gsm8k,
            "math": math,
            "crux": crux,
        }
        self.seed = seed
        self.dev_share = dev_share
        self._split: dict[str, dict[str, list[Question]]] = {}
        for domain, bench in self.benches.items():
            pool = (
                bench.common_questions() if isinstance(bench, MathL5 | Crux) else bench.questions()
            )
            order = list(range(len(pool)))
            random.Random(f"{seed}:{domain}").shuffle(order)
            cut = round(dev_share * len(pool))
            self._split[domain] = {
                "dev": [pool[i] for i in sorted(order[:cut])],
                "test": [pool[i] for i in sorted(order[cut:])],
            }

    @classmethod
    def from_paths(cls, gsm8k: Path, math: Path, crux: Path, **kw: Any) -> MixedWorkload:
        return cls(GSM8K(gsm8k), MathL5(math), Crux(crux), **kw)

    @property
    def root(self) -> Path:
        return Path(os.path.commonpath([str(b.root.resolve()) for b in self.benches.values()]))

    def questions(self, domain: str, split: Split) -> list[Question]:
        return self._split[domain][split]

    def items(
        self, split: Split, limit: int | None = None, domains: Sequence[str] | None = None
    ) -> list[MixItem]:
        """The split's questions of every domain, interleaved (the first ``limit``); with
        ``domains``, only the questions of those (in the same order)."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
        unknown = sorted(set(domains or ()) - set(self.benches))
        if unknown:
            raise ConfigError(f"unknown domain {unknown[0]!r}; known: {', '.join(self.benches)}")
        items = [MixItem(d, q) for d in self.benches for q in self._split[d][split]]
        random.Random(f"{self.seed}:{split}").shuffle(items)
        if domains is not None:
            items = [it for it in items if it.domain in domains]
        return items[:limit]

    def prompt(self, item: MixItem) -> str:
        return self.benches[item.domain].prompt(item.question)

    def score(self, item: MixItem, text: str) -> tuple[str, bool]:
        found = self.benches[item.domain].score(text, item.question)
        return found.answer or "", found.correct


def routes(system: System) -> dict[str, set[str]] | None:
    """A routed network's agents by the domain they serve; None for a system that does not
    route (a single model, or a network without a ``plan`` agent)."""
    if not isinstance(system, NetworkSystem):
        return None
    agents = system.config.agents
    if not any("plan" in a.capabilities for a in agents):
        return None
    return {d: {a.name for a in agents if d in a.capabilities} for d in DOMAINS}


def check_network(system: System, workload: MixedWorkload) -> None:
    """A routed network serves every domain, and compares answers as each domain scores them."""
    served = routes(system)
    if served is None or not isinstance(system, NetworkSystem):
        return
    name = system.config.name
    for domain in workload.benches:
        if not served.get(domain):
            raise ConfigError(
                f"network {name!r} has no specialist for domain {domain!r}: no agent serves "
                f"the capability {domain!r}; add agents for it"
            )
        agreement = system.config.routing.agreement.get(domain)
        bench = workload.benches[domain]
        if agreement is not None and agreement.answer != bench.answer:
            raise ConfigError(
                f"network {name!r} compares the answers of {domain!r} with "
                f"{agreement.answer!r}, but {bench.name} is scored with {bench.answer!r}; set "
                f"routing.agreement.{domain}.answer: {bench.answer}"
            )


async def check_recordings(system: System, workload: MixedWorkload, items: list[MixItem]) -> None:
    """Every replayed model holds a recording of each question it may be asked: a routed
    network's specialists those of their domain, any other model every question."""
    served = routes(system)
    owner: dict[str, set[str]] = {}
    if served is not None and isinstance(system, NetworkSystem):
        by_agent = {a.name: a.model for a in system.config.agents if a.model is not None}
        for domain, names in served.items():
            for agent in names & set(by_agent):
                owner.setdefault(by_agent[agent], set()).add(domain)
    for name, model in (await system.models()).items():
        if not isinstance(model, ReplayModel):
            continue
        for item in items:
            if item.domain not in owner.get(name, {item.domain}):
                continue
            try:
                model.lookup(workload.prompt(item))
            except RecordingNotFound:
                raise ConfigError(
                    f"model {name!r} ({model.origin}) has no recording of {item.domain} "
                    f"question {item.question.id}; are its recordings of another benchmark?"
                ) from None


async def run_mix(
    system: System,
    workload: MixedWorkload,
    *,
    split: Split,
    out: Path,
    limit: int | None = None,
    domains: Sequence[str] | None = None,
    concurrency: int = 16,
    progress: bool = True,
    console: Console | None = None,
) -> MixSummary:
    """Answer the split's questions not yet recorded in ``out`` (of ``domains`` only, where
    given: a model recorded on some of them), then score them all."""
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
    items = workload.items(split, limit, domains)
    check_network(system, workload)
    store = Store.open(out, system, f"mix-{split}", workload.root)
    done = {d: store.read(d) for d in workload.benches}
    todo = [
        it
        for it in items
        if it.question.index not in done[it.domain]
        or done[it.domain][it.question.index].error is not None
    ]
    if todo:
        await check_recordings(system, workload, todo)
    jobs = [_job(workload, it, n) for n, it in enumerate(todo)]
    records = await answer_all(
        system,
        jobs,
        store,
        concurrency=concurrency,
        description=f"mix {split} {system.name}",
        progress=progress,
        console=console,
    )
    for rec in records:
        done[rec.task][rec.index] = rec
    kept = [done[it.domain][it.question.index] for it in items]
    summary = summarise_mix(system, split, limit, kept, routes(system))
    write_atomically(out / "summary.json", summary.model_dump_json(indent=2) + "\n")
    return summary


def _job(workload: MixedWorkload, item: MixItem, n: int) -> Job:
    def scored(text: str) -> tuple[str, bool]:
        return workload.score(item, text)

    q = item.question
    # the metadata says nothing of the domain: the network sees the request alone
    return Job(item.domain, q.index, q.target, workload.prompt(item), {"benchmark": "mix"}, scored)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def records_of(out: Path, domains: Sequence[str] = DOMAINS) -> list[ExampleRecord]:
    """The per-question records of a finished run folder."""
    store = Store(out)
    return [rec for d in domains for rec in store.read(d).values()]


__all__ = [
    "DEV_SHARE",
    "DOMAINS",
    "SEED",
    "SPLITS",
    "MixItem",
    "MixedWorkload",
    "check_network",
    "check_recordings",
    "records_of",
    "routes",
    "run_mix",
    "write_atomically",
]
