"""Choose the mixed workload's specialists on the DEV split only, and write the chosen config.

Reads nothing of the test split. For each escalation model (Llama-3.1-70B, GPT-4o) and each
domain, every way to answer it with small models (<= 9B) recorded on that domain is scored
from their recorded dev answers: one small specialist alone, or a pair that must agree (the
domain's own answer rule), else the escalation model. Each has a dev accuracy and a cost
(tokens estimated from the text, 4 characters a token, at models.yaml's prices). The choice,
one option per domain, is the one that answers the most dev questions right in all whose
dev cost is within a budget: the escalation model's own dev cost over the three domains for
the 70B network (so cheaper than it), 30 % of it for the GPT-4o network. The dispatcher's
classifier (naive Bayes on the request text) is estimated by 5-fold cross-validation on dev.

    python benchmarks/mix/choose.py          # prints the choice, writes chosen.yaml and
                                             # examples/mix-routed-{70b,gpt4o}.yaml
"""

from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from networks import (
    ROOT,
    SHARED,
    Answers,
    catalogue,
    routed_network,
    small,
    workload,
)

from rede.evals.classifier import DomainClassifier
from rede.evals.mix import DOMAINS, SEED, MixedWorkload

HERE = Path(__file__).resolve().parent
BUDGET = {"llama31-70b": 1.0, "gpt-4o": 0.30}
"""Dev cost allowed to a cascade, as a share of its escalation model's own dev cost."""
NETWORKS = {"llama31-70b": "mix-routed-70b", "gpt-4o": "mix-routed-gpt4o"}


def usd(model: str, tokens: int) -> float:
    """Estimated tokens at the model's price (half prompt, half reply is close enough to
    rank pairs; the reported figures come from the real runs, not from this)."""
    entry = catalogue()[model]
    return tokens * (entry["input"] + entry["output"]) / 2e6


def cascade(
    ans: Answers, domain: str, pair: tuple[str, str], big: str
) -> tuple[float, float, float]:
    """Dev accuracy %, USD per question, escalated % of ``pair`` agreeing else ``big``."""
    a, b, e = (ans.by[(m, domain)] for m in (*pair, big))
    right = spent = escalated = 0.0
    for i, (answer, ok, tokens) in a.items():
        other, _, other_tokens = b[i]
        spent += usd(pair[0], tokens) + usd(pair[1], other_tokens)
        if answer is not None and answer == other:
            right += ok
        else:
            escalated += 1
            right += e[i][1]
            spent += usd(big, e[i][2])
    n = len(a)
    return 100 * right / n, spent / n, 100 * escalated / n


def single(ans: Answers, domain: str, model: str) -> tuple[float, float]:
    table = ans.by[(model, domain)]
    n = len(table)
    return (
        100 * sum(ok for _, ok, _ in table.values()) / n,
        sum(usd(model, t) for _, _, t in table.values()) / n,
    )


def options(ans: Answers, domain: str, big: str) -> list[dict[str, Any]]:
    """Each way to answer a domain: one small specialist alone, or two that must agree, else
    ``big``; with its dev correct count and estimated dev USD."""
    smalls = [m for m, e in catalogue().items() if small(e) and ans.has(m, domain)]
    n = len(ans.by[(smalls[0], domain)])
    out = []
    for m in smalls:
        acc, spent = single(ans, domain, m)
        out.append({"first": [m], "escalate": None, "right": acc * n / 100, "usd": spent * n,
                    "dev_accuracy": round(acc, 2), "dev_escalated_pct": 0.0})  # fmt: skip
    for pair in itertools.combinations(smalls, 2):
        acc, spent, esc = cascade(ans, domain, pair, big)
        out.append({"first": list(pair), "escalate": big, "right": acc * n / 100,
                    "usd": spent * n, "dev_accuracy": round(acc, 2),
                    "dev_escalated_pct": round(esc, 1)})  # fmt: skip
    return out


def choose(ans: Answers, big: str) -> dict[str, dict[str, Any]]:
    """The per-domain options that answer most dev questions right in all, within the dev
    budget (``BUDGET`` times ``big``'s own dev cost over the three domains)."""
    allowed = BUDGET[big] * sum(single(ans, d, big)[1] * len(ans.by[(big, d)]) for d in DOMAINS)
    per = [options(ans, d, big) for d in DOMAINS]
    best: tuple[float, float, tuple[dict[str, Any], ...]] | None = None
    for combo in itertools.product(*per):
        spent = sum(o["usd"] for o in combo)
        if spent > allowed:
            continue
        key = (sum(o["right"] for o in combo), -spent, combo)
        if best is None or key[:2] > best[:2]:
            best = key
    if best is None:
        raise SystemExit(f"no choice of small specialists fits the dev budget for {big}")
    picks = dict(zip(DOMAINS, best[2], strict=True))
    for d, o in picks.items():
        o["dev_usd_per_1k_est"] = round(1000 * o.pop("usd") / len(ans.by[(big, d)]), 4)
        o.pop("right")
        o["options_tried"] = len(per[DOMAINS.index(d)])
    return picks


def classifier_cv(work: MixedWorkload, folds: int = 5) -> float:
    """Accuracy % of the dispatcher's classifier by k-fold cross-validation on dev."""
    items = work.items("dev")
    order = list(range(len(items)))
    random.Random(f"{SEED}:cv").shuffle(order)
    right = 0
    for k in range(folds):
        held = set(order[k::folds])
        train = [items[i] for i in order if i not in held]
        clf = DomainClassifier.train([work.prompt(it) for it in train], [it.domain for it in train])
        right += sum(clf.classify(work.prompt(items[i]))[0] == items[i].domain for i in held)
    return 100 * right / len(items)


def main() -> None:
    work = workload(SHARED)
    ans = Answers.read(work, "dev")
    chosen: dict[str, Any] = {
        "split": f"dev only (seed {SEED}, 30 % of each dataset)",
        "dev_questions": {d: len(work.questions(d, "dev")) for d in DOMAINS},
        "best_small_on_dev": {},
        "networks": {},
    }
    for domain in DOMAINS:
        ranked = sorted(
            (single(ans, domain, m)[0], m)
            for m, e in catalogue().items()
            if small(e) and ans.has(m, domain)
        )
        chosen["best_small_on_dev"][domain] = {m: round(a, 2) for a, m in reversed(ranked)}
    for big, name in NETWORKS.items():
        picks = choose(ans, big)
        chosen["networks"][name] = picks
        conf = routed_network(
            name,
            f"dispatcher routes by domain to small specialists; a pair that disagrees asks {big}",
            {d: picks[d]["first"] for d in DOMAINS},
            {d: picks[d]["escalate"] for d in DOMAINS},
            "../benchmarks/mix/replay",
        )
        head = (
            f"# Chosen on the dev split by benchmarks/mix/choose.py (do not edit by hand).\n"
            f"# rede bench mix --network examples/{name}.yaml --split test\n"
        )
        (ROOT / "examples" / f"{name}.yaml").write_text(
            head + yaml.safe_dump(conf, sort_keys=False)
        )
    chosen["classifier"] = {
        "kind": "multinomial naive Bayes on request tokens (rede.evals.classifier)",
        "trained_on": "the dev split's request texts (rede bench mix trains it so)",
        "dev_cv5_accuracy_pct": round(classifier_cv(work), 2),
    }
    text = yaml.safe_dump(chosen, sort_keys=False)
    (HERE / "chosen.yaml").write_text(
        "# Written by benchmarks/mix/choose.py from dev only.\n" + text
    )
    print(text)


if __name__ == "__main__":
    main()
