"""A light domain classifier for a dispatcher: multinomial naive Bayes on the request's tokens.

Trained on request texts with their domain (the dev split of a workload), it names the domain
of a new request from its text alone. Features are the set of a request's lower-cased words,
numbers and punctuation (``$``, ``\\``, ``{``, ``[python]``...) and a TeX marker. Add-one
smoothing; no dependency beyond the standard library; the trained model is plain JSON
(:meth:`DomainClassifier.to_json`), so a run's classifier can be kept beside its results.

:func:`dispatch_tool` turns a classifier into the ``plan`` agent of a network: the network's
dispatcher asks it for a plan, and it answers with a one-step plan whose capability is the
domain it names, with its probability in the plan's intent, so the ledger and ``rede trace``
show every classification.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from rede.agents.tools import Tool
from rede.errors import ConfigError
from rede.protocol.messages import Task

_TOKEN = re.compile(r"\[/?python\]|[a-z]+|\d+|[^\sa-z\d]", re.IGNORECASE)
_LATEX = re.compile(r"\$[^$]*[a-zA-Z\\^_{}][^$]*\$|\\[a-zA-Z]+|\$\d+\$")
"""TeX in a request: ``$x^2$``, ``\\frac``, ``$7$`` (a dollar amount is ``$7`` alone)."""


def tokens(text: str) -> list[str]:
    """The features of a request: the set of its words, numbers (``<numN>``, N their length
    up to 5) and symbols, and ``<latex>`` when it holds TeX. A set, not counts: a long word
    problem should not outvote one ``$\\frac{1}{2}$``."""
    found = {f"<num{min(len(t), 5)}>" if t.isdigit() else t for t in _TOKEN.findall(text.lower())}
    if _LATEX.search(text):
        found.add("<latex>")
    return sorted(found)


class DomainClassifier:
    """Multinomial naive Bayes over :func:`tokens`."""

    def __init__(
        self,
        log_prior: dict[str, float],
        log_prob: dict[str, dict[str, float]],
        log_unknown: dict[str, float],
        trained_on: str = "",
    ) -> None:
        if not log_prior:
            raise ConfigError("a domain classifier needs at least one domain")
        self.log_prior = log_prior
        self.log_prob = log_prob
        self.log_unknown = log_unknown
        self.trained_on = trained_on

    @property
    def domains(self) -> list[str]:
        return sorted(self.log_prior)

    @classmethod
    def train(
        cls, texts: Sequence[str], labels: Sequence[str], *, trained_on: str = ""
    ) -> DomainClassifier:
        """Fit on ``texts`` and their domains (add-one smoothing)."""
        if len(texts) != len(labels) or not texts:
            raise ConfigError(
                f"training a classifier needs as many labels as texts (and some): got "
                f"{len(texts)} texts, {len(labels)} labels"
            )
        counts: dict[str, Counter[str]] = {}
        docs = Counter(labels)
        for text, label in zip(texts, labels, strict=True):
            counts.setdefault(label, Counter()).update(tokens(text))
        vocab = {tok for c in counts.values() for tok in c}
        log_prob: dict[str, dict[str, float]] = {}
        log_unknown: dict[str, float] = {}
        for label, c in counts.items():
            total = sum(c.values()) + len(vocab) + 1
            log_prob[label] = {tok: math.log((n + 1) / total) for tok, n in c.items()}
            log_unknown[label] = math.log(1 / total)
        log_prior = {label: math.log(n / len(labels)) for label, n in docs.items()}
        return cls(log_prior, log_prob, log_unknown, trained_on)

    def scores(self, text: str) -> dict[str, float]:
        """Each domain's probability for ``text``."""
        feats = tokens(text)
        logs = {
            label: prior
            + sum(self.log_prob[label].get(tok, self.log_unknown[label]) for tok in feats)
            for label, prior in self.log_prior.items()
        }
        top = max(logs.values())
        exp = {label: math.exp(v - top) for label, v in logs.items()}
        total = sum(exp.values())
        return {label: v / total for label, v in exp.items()}

    def classify(self, text: str) -> tuple[str, float]:
        """The most probable domain and its probability."""
        probs = self.scores(text)
        best = max(sorted(probs), key=lambda label: probs[label])
        return best, probs[best]

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": "multinomial-naive-bayes",
                "trained_on": self.trained_on,
                "log_prior": self.log_prior,
                "log_unknown": self.log_unknown,
                "log_prob": self.log_prob,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> DomainClassifier:
        try:
            data: Any = json.loads(text)
            return cls(data["log_prior"], data["log_prob"], data["log_unknown"], data["trained_on"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"not a saved domain classifier: {exc}") from None


def check_domains(classifier: DomainClassifier, capabilities: Iterable[str], where: str) -> None:
    """Every domain the classifier can name is a capability of the network."""
    served = set(capabilities)
    unknown = [d for d in classifier.domains if d not in served]
    if unknown:
        raise ConfigError(
            f"the classifier names domain {unknown[0]!r}, which no specialist of {where} "
            f"serves (its capabilities: {', '.join(sorted(served)) or 'none'}); add agents "
            f"for {unknown[0]!r} or train the classifier without it"
        )


def dispatch_tool(classifier: DomainClassifier, name: str = "dispatch") -> Tool:
    """The classifier as a ``plan`` tool: the request in, a one-step plan of its domain out."""

    def dispatch(task: Task) -> str:
        request = str(task.metadata.get("request") or task.request or task.instruction)
        domain, p = classifier.classify(request)
        step = {"id": "answer", "capability": domain, "instruction": request}
        return json.dumps({"intent": f"domain:{domain} p={p:.3f}", "steps": [step]})

    return Tool(dispatch, name=name)


__all__ = ["DomainClassifier", "check_domains", "dispatch_tool", "tokens"]
