"""Workloads: generated tasks with known answers and a known ideal decomposition.

A :class:`SimTask` is a user request made of **parts**, each a sub-question with one true
answer, a few plausible wrong ones, the capability that answers it best, and the parts it
depends on. Its ``ideal_plan`` is the decomposition a perfect planner would write. Nothing
here understands language: questions are about fictional entities (or plain arithmetic), so
no model can know the answers except through the simulation's answer key.

Kinds (``workload.kind`` in a scenario):

- ``multipart``: one request asks ``parts`` independent questions, each from one of
  ``domains`` (``math``, ``geography``, ``history``, ``science``, ``literature``, or any other
  name). Ideal plan: one step per part, its domain as the capability, no dependencies.
- ``report``: a research-report workflow about a fictional company. Three facts are
  researched (``research``), one figure is derived from two of them (``analyse``), and a
  report is written from all four (``write``, reviewed by a critic when ``review`` is set).

An answer is graded by the lines ``- <part id>: <value>`` it contains (what the simulated
models write): a part is correct when its value equals the truth; a task is correct when
every part is.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rede.orchestration.plan import Plan, Step

ANSWER_LINE = re.compile(r"^\s*-\s*([A-Za-z0-9_\-]+)\s*:\s*(.*?)\s*$", re.M)


class Part(BaseModel):
    """One sub-question with a known answer."""

    model_config = ConfigDict(extra="forbid")
    id: str
    question: str
    capability: str
    """The capability that answers it best (a model's quality for it decides correctness)."""
    truth: str
    wrong: list[str] = Field(min_length=1)
    depends_on: list[str] = Field(default_factory=list)
    """Parts whose values this one is derived from: wrong inputs make a wrong result."""


class SimTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    request: str
    parts: list[Part] = Field(min_length=1)
    ideal_plan: Plan

    def part(self, part_id: str) -> Part:
        return next(p for p in self.parts if p.id == part_id)


class WorkloadConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["multipart", "report"] = "multipart"
    tasks: int = Field(10, ge=1, le=10_000)
    parts: int = Field(3, ge=1, le=8)
    """``multipart``: sub-questions per request."""
    domains: list[str] = Field(
        default_factory=lambda: ["math", "geography", "history", "science"], min_length=1
    )
    """``multipart``: capabilities the questions are drawn from."""
    review: bool = True
    """``report``: the ideal plan has the report reviewed by a critic."""
    seed: int | None = None
    """Defaults to the scenario's seed."""


# --------------------------------------------------------------------------- answers


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower().rstrip(".")).strip()


def parse_answers(text: str, part_ids: set[str] | None = None) -> dict[str, str]:
    """``{part id: value}`` from ``- id: value`` lines; the first line for an id wins."""
    found: dict[str, str] = {}
    for m in ANSWER_LINE.finditer(text):
        pid, value = m.group(1), m.group(2)
        if (part_ids is None or pid in part_ids) and pid not in found:
            found[pid] = value
    return found


def grade(task: SimTask, answer: str) -> dict[str, bool]:
    """Per part: does the answer state the true value?"""
    given = parse_answers(answer, {p.id for p in task.parts})
    return {
        p.id: p.id in given and normalise(given[p.id]) == normalise(p.truth) for p in task.parts
    }


# --------------------------------------------------------------------------- generators

_SYLLABLES = ["ka", "lo", "ven", "dra", "mi", "sor", "tal", "ne", "quo", "ri", "bes", "ul", "zan"]


def _name(rng: random.Random, syllables: int = 3) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(syllables)).capitalize()


def _near(rng: random.Random, truth: int, spread: int, n: int = 3) -> list[str]:
    out: set[int] = set()
    while len(out) < n:
        v = truth + rng.choice([-1, 1]) * rng.randint(1, max(1, spread))
        if v != truth and v > 0:
            out.add(v)
    return [str(v) for v in sorted(out)]


def _names(rng: random.Random, truth: str, n: int = 3) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        v = _name(rng)
        if v != truth:
            out.add(v)
    return sorted(out)


QuestionMaker = Callable[[random.Random], tuple[str, str, list[str]]]


def _math(rng: random.Random) -> tuple[str, str, list[str]]:
    a, b = rng.randint(12, 99), rng.randint(12, 99)
    return f"What is {a} x {b}?", str(a * b), _near(rng, a * b, 30)


def _geography(rng: random.Random) -> tuple[str, str, list[str]]:
    city = _name(rng)
    return f"What is the capital of the fictional country {_name(rng)}ia?", city, _names(rng, city)


def _history(rng: random.Random) -> tuple[str, str, list[str]]:
    year = rng.randint(1400, 1950)
    return (
        f"In which year was the fictional Treaty of {_name(rng)} signed?",
        str(year),
        _near(rng, year, 40),
    )


def _science(rng: random.Random) -> tuple[str, str, list[str]]:
    kelvin = rng.randint(200, 1800)
    question = f"What is the melting point, in kelvin, of the fictional compound {_name(rng)}ite?"
    return question, str(kelvin), _near(rng, kelvin, 80)


def _literature(rng: random.Random) -> tuple[str, str, list[str]]:
    author = f"{_name(rng, 2)} {_name(rng)}"
    wrong = [f"{_name(rng, 2)} {_name(rng)}" for _ in range(3)]
    return f"Who wrote the fictional novel 'The {_name(rng)} Lantern'?", author, wrong


def _generic(domain: str) -> QuestionMaker:
    def make(rng: random.Random) -> tuple[str, str, list[str]]:
        code = f"{_name(rng, 2).upper()}-{rng.randint(100, 999)}"
        wrong = [f"{_name(rng, 2).upper()}-{rng.randint(100, 999)}" for _ in range(3)]
        return f"What is the {domain} code of the fictional item {_name(rng)}?", code, wrong

    return make


QUESTIONS: dict[str, QuestionMaker] = {
    "math": _math,
    "geography": _geography,
    "history": _history,
    "science": _science,
    "literature": _literature,
}


def multipart_task(rng: random.Random, task_id: str, parts: int, domains: list[str]) -> SimTask:
    picked = (
        rng.sample(domains, parts)
        if parts <= len(domains)
        else [rng.choice(domains) for _ in range(parts)]
    )
    made: list[Part] = []
    for i, domain in enumerate(picked, start=1):
        question, truth, wrong = QUESTIONS.get(domain, _generic(domain))(rng)
        made.append(
            Part(id=f"p{i}", question=question, capability=domain, truth=truth, wrong=wrong)
        )
    request = "Answer each part. " + " ".join(f"({i}) {p.question}" for i, p in enumerate(made, 1))
    plan = Plan(
        intent="compose",
        steps=[Step(id=p.id, capability=p.capability, instruction=p.question) for p in made],
    )
    return SimTask(id=task_id, request=request, parts=made, ideal_plan=plan)


def report_task(rng: random.Random, task_id: str, review: bool) -> SimTask:
    company = f"{_name(rng)} Systems"
    sector = rng.choice(["cold-chain logistics", "grid storage", "veterinary diagnostics"])
    revenue, share, founded = rng.randint(120, 900), rng.randint(5, 40), rng.randint(1950, 2015)
    market = round(revenue * 100 / share)
    parts = [
        Part(
            id="revenue",
            question=f"Find the annual revenue of {company}, in millions of dollars.",
            capability="research",
            truth=str(revenue),
            wrong=_near(rng, revenue, 60),
        ),
        Part(
            id="share",
            question=f"Find the share of the {sector} market held by {company}, in percent.",
            capability="research",
            truth=str(share),
            wrong=_near(rng, share, 4),
        ),
        Part(
            id="founded",
            question=f"Find the year {company} was founded.",
            capability="research",
            truth=str(founded),
            wrong=_near(rng, founded, 6),
        ),
        Part(
            id="market",
            question=(
                f"Estimate the size of the {sector} market, in millions of dollars, from the "
                f"revenue and market share of {company}."
            ),
            capability="analyse",
            truth=str(market),
            wrong=_near(rng, market, max(10, market // 5)),
            depends_on=["revenue", "share"],
        ),
    ]
    request = (
        f"Write a short investor report on the fictional company {company}: its revenue, its "
        f"share of the {sector} market, the year it was founded, and the market size they imply."
    )
    steps = [
        Step(id=p.id, capability=p.capability, instruction=p.question, depends_on=p.depends_on)
        for p in parts
    ]
    steps.append(
        Step(
            id="report",
            capability="write",
            instruction=f"Write the investor report on {company} from the findings.",
            depends_on=[p.id for p in parts],
            review=review,
        )
    )
    return SimTask(id=task_id, request=request, parts=parts, ideal_plan=Plan(steps=steps))


def generate(config: WorkloadConfig, seed: int = 0) -> list[SimTask]:
    """The tasks of a workload, the same for the same config and seed."""
    rng = random.Random(f"rede-sim|{config.seed if config.seed is not None else seed}")
    if config.kind == "report":
        return [report_task(rng, f"t{i}", config.review) for i in range(config.tasks)]
    return [multipart_task(rng, f"t{i}", config.parts, config.domains) for i in range(config.tasks)]
