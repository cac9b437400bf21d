"""Prometheus metrics at ``/metrics``: runs, step latency, tokens, cost, queue depth, HTTP.

One ``CollectorRegistry`` per app (no process-global state), so two apps in one process,
as in the tests, count separately. Queue depth and agent health are read when scraped.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from rede import Network
from rede.server.runs import RunManager, ServedRun

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STEP_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _Live(Collector):
    """Gauges read at scrape time: runs in progress, and per agent the calls in flight
    (the queue depth routing sees), live replicas and their reported load."""

    def __init__(self, runs: RunManager) -> None:
        self.runs = runs

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        active = GaugeMetricFamily("rede_runs_active", "Runs in progress.", labels=["model"])
        by_model: dict[str, int] = dict.fromkeys(self.runs.networks, 0)
        for run in self.runs.runs.values():
            if not run.done:
                by_model[run.model] = by_model.get(run.model, 0) + 1
        for model, n in by_model.items():
            active.add_metric([model], n)
        yield active
        queue = GaugeMetricFamily(
            "rede_agent_queue_depth",
            "Calls sent to an agent and not yet answered.",
            labels=["model", "agent"],
        )
        replicas = GaugeMetricFamily(
            "rede_agent_replicas", "Live replicas of an agent.", labels=["model", "agent"]
        )
        slots = GaugeMetricFamily(
            "rede_agent_concurrency",
            "Tasks one replica of an agent works on at once (more wait on the bus).",
            labels=["model", "agent"],
        )
        for model, net in self.runs.networks.items():
            for name, depth, live in _agents(net):
                queue.add_metric([model, name], depth)
                replicas.add_metric([model, name], live)
            for agent in net.config.agents:
                slots.add_metric([model, agent.name], agent.concurrency)
        yield queue
        yield replicas
        yield slots
        yield from _bus_rejections(self.runs)


def _bus_rejections(runs: RunManager) -> Iterator[CounterMetricFamily]:
    """What each network's bus refused on receipt (this process's readers), by reason, and
    the dead letters this process wrote (each refused entry is dead-lettered once)."""
    rejected = CounterMetricFamily(
        "rede_bus_rejected",
        "Envelopes refused on receipt: malformed, too_large, signature, max_deliveries.",
        labels=["model", "reason"],
    )
    dead = CounterMetricFamily(
        "rede_bus_dead_lettered", "Dead letters written by this process.", labels=["model"]
    )
    for model, net in runs.networks.items():
        if net.bus is None:
            continue
        for reason, n in sorted(net.bus.stats.rejected.items()):
            rejected.add_metric([model, reason], n)
        dead.add_metric([model], net.bus.stats.dead_lettered)
    yield rejected
    yield dead


def _agents(net: Network) -> Iterator[tuple[str, int, int]]:
    views = {v.name: v for v in net.registry.agents()}
    for agent in net.config.agents:
        view = views.get(agent.name)
        yield (
            agent.name,
            net.router.in_flight.get(agent.name, 0),
            view.replicas if view is not None else 0,
        )


class Metrics:
    def __init__(self, runs: RunManager) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs_total = Counter(
            "rede_runs", "Runs finished, by outcome.", ["model", "status", "source"], registry=r
        )
        self.run_seconds = Histogram(
            "rede_run_duration_seconds", "Wall time of a run.", ["model"], registry=r
        )
        self.step_seconds = Histogram(
            "rede_step_duration_seconds",
            "Wall time of a step (every attempt, critique and refinement).",
            ["model", "capability"],
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "rede_tokens", "Model tokens of finished runs.", ["model", "kind"], registry=r
        )
        self.cost = Counter("rede_cost_usd", "Cost of finished runs in USD.", ["model"], registry=r)
        self.rejected = Counter(
            "rede_runs_rejected", "Runs refused before they started.", ["reason"], registry=r
        )
        self.http = Counter(
            "rede_http_requests", "HTTP requests.", ["method", "route", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "rede_http_request_duration_seconds",
            "Time to the end of the response.",
            ["method", "route"],
            registry=r,
        )
        self.auth_refused = Counter(
            "rede_auth_refused",
            "Requests refused for their API key: missing, invalid, or limited (429).",
            ["reason"],
            registry=r,
        )
        r.register(_Live(runs))

    def run_finished(self, run: ServedRun) -> None:
        self.runs_total.labels(run.model, run.status, run.source).inc()
        usage = run.usage
        self.tokens.labels(run.model, "prompt").inc(usage.prompt_tokens)
        self.tokens.labels(run.model, "completion").inc(usage.completion_tokens)
        self.cost.labels(run.model).inc(usage.cost_usd)
        if run.result is not None:
            self.run_seconds.labels(run.model).observe(run.result.wall_time_s)
            for step in run.result.steps:
                if step.started_at is not None and step.ended_at is not None:
                    self.step_seconds.labels(run.model, step.capability).observe(
                        max(0.0, step.ended_at - step.started_at)
                    )

    def render(self) -> bytes:
        return generate_latest(self.registry)
