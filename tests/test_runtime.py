"""The core runtime end to end on the in-process bus, with scripted models (no LLM)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from rede.agents.specialists import Specialist, SpecialistSpec
from rede.agents.tools import ToolSpecialist, echo_tool
from rede.bus import MemoryBus
from rede.errors import (
    BusError,
    ConfigError,
    PlanError,
    RunLimitExceeded,
    StepFailed,
    UnknownCapability,
)
from rede.models import ModelRequest, ScriptedModel
from rede.network import Network
from rede.orchestration.dispatcher import main_capability
from rede.orchestration.ledger import Ledger
from rede.orchestration.plan import Plan, Step
from rede.protocol.messages import Envelope, ErrorPayload, Event, Result, Task
from rede.protocol.topics import Topic
from rede.runtime._lease import Lease, Renewals
from rede.runtime.agent import AgentRunner

Handler = Callable[[ModelRequest], Any]


def plan_json(*steps: dict[str, Any]) -> str:
    return json.dumps({"intent": "compose", "steps": list(steps)})


def step(sid: str, cap: str, deps: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    return {
        "id": sid,
        "capability": cap,
        "instruction": f"do {sid}",
        "depends_on": deps or [],
        **kw,
    }


def network(
    agents: list[dict[str, Any]], handlers: dict[str, Handler], **conf: Any
) -> tuple[Network, dict[str, ScriptedModel]]:
    """A network whose agent models are scripted: ``handlers`` maps model name -> handler."""
    models = {name: ScriptedModel(fn, name=name) for name, fn in handlers.items()}
    data: dict[str, Any] = {
        "models": {name: {"spec": "sim:7b"} for name in handlers},
        "agents": agents,
        "heartbeat_s": 0.1,
        "agent_ttl_s": 0.6,
        **conf,
    }
    data.setdefault("limits", {})
    data["limits"].setdefault("step_timeout_s", 10)
    return Network.from_dict(data, models=models), models


def by_capability(**replies: Any) -> Handler:
    """A handler answering by the call's capability; values may be str or callables."""

    def handler(request: ModelRequest) -> Any:
        reply = replies[request.metadata["capability"]]
        return reply(request) if callable(reply) else reply

    return handler


async def test_three_independent_steps_run_in_parallel() -> None:
    all_in = asyncio.Event()
    models: dict[str, ScriptedModel] = {}

    async def researcher(request: ModelRequest) -> str:
        if models["r"].in_flight >= 3:
            all_in.set()
        try:
            async with asyncio.timeout(5):
                await all_in.wait()
        except TimeoutError:
            pass  # the assertion below reports the real concurrency
        return f"facts for {request.metadata['instruction']}\nCONFIDENCE: 0.9"

    plan = plan_json(
        step("a", "research"),
        step("b", "research"),
        step("c", "research"),
        step("w", "write", ["a", "b", "c"]),
    )
    net, built = network(
        [
            {"name": "planner", "capabilities": ["plan"], "model": "p"},
            {"name": "researcher", "capabilities": ["research"], "model": "r"},
            {"name": "writer", "capabilities": ["write"], "model": "w"},
        ],
        {"p": lambda r: plan, "r": researcher, "w": lambda r: "final text\nCONFIDENCE: 0.8"},
    )
    models.update(built)
    async with net:
        result = await net.ask("three things")
    assert models["r"].max_in_flight == 3
    assert result.status == "ok"
    assert result.answer == "final text"
    writer_prompt = built["w"].requests[0].prompt_text
    assert all(f"facts for do {s}" in writer_prompt for s in "abc"), "results flow as context"


def critic_sequence(*verdicts: bool) -> Handler:
    calls = iter(verdicts)

    def critic(request: ModelRequest) -> str:
        ok = next(calls)
        return json.dumps(
            {
                "score": 0.9 if ok else 0.3,
                "accepted": ok,
                "issues": [] if ok else ["too vague"],
                "advice": "add numbers",
            }
        )

    return critic


def review_network(critic: Handler, **limits: Any) -> tuple[Network, dict[str, ScriptedModel]]:
    drafts = iter(range(1, 100))
    return network(
        [
            {"name": "planner", "capabilities": ["plan"], "model": "p"},
            {"name": "writer", "capabilities": ["write"], "model": "w"},
            {"name": "critic", "capabilities": ["critique"], "model": "c"},
        ],
        {
            "p": lambda r: plan_json(step("draft", "write", review=True)),
            "w": lambda r: f"draft {next(drafts)}\nCONFIDENCE: 0.7",
            "c": critic,
        },
        limits=limits,
    )


async def test_refine_loop_stops_when_the_critic_accepts() -> None:
    net, models = review_network(critic_sequence(False, True), max_refine_rounds=3)
    async with net:
        result = await net.ask("write something")
    assert result.answer == "draft 2"
    assert len(models["w"].requests) == 2 and len(models["c"].requests) == 2
    assert "add numbers" in models["w"].requests[1].prompt_text, "advice reaches the writer"
    assert "draft 1" in models["w"].requests[1].prompt_text, "the previous draft too"
    assert result.step("draft").rounds == 1
    assert [d["name"] for d in result.decisions if d["name"] in ("refine", "accepted")] == [
        "refine",
        "accepted",
    ]


async def test_refine_loop_stops_at_the_round_limit() -> None:
    net, models = review_network(critic_sequence(*[False] * 10), max_refine_rounds=2)
    async with net:
        result = await net.ask("write something")
    assert len(models["w"].requests) == 3, "first draft + 2 refinements"
    assert result.answer == "draft 3"
    assert any(d["name"] == "round_limit" for d in result.decisions)


async def test_round_limit_can_fail_the_run_naming_the_limit() -> None:
    net, _ = review_network(
        critic_sequence(*[False] * 10), max_refine_rounds=1, on_round_limit="fail"
    )
    async with net:
        with pytest.raises(RunLimitExceeded, match="max_refine_rounds") as info:
            await net.ask("write something")
    assert info.value.run.status == "failed"


def planner_sequence(*replies: str) -> Handler:
    calls = iter(replies)
    return lambda request: next(calls)


async def test_invalid_plan_is_sent_back_with_the_error_and_repaired() -> None:
    cycle = plan_json(step("a", "research", ["b"]), step("b", "research", ["a"]))
    good = plan_json(step("a", "research"))
    net, models = network(
        [
            {"name": "planner", "capabilities": ["plan"], "model": "p"},
            {"name": "researcher", "capabilities": ["research"], "model": "r"},
        ],
        {"p": planner_sequence(cycle, good), "r": lambda r: "done\nCONFIDENCE: 0.9"},
    )
    async with net:
        result = await net.ask("something")
    assert result.answer == "done"
    invalid = [d for d in result.decisions if d["name"] == "plan_invalid"]
    assert len(invalid) == 1 and "cycle" in invalid[0]["error"]
    assert "a -> b -> a" in invalid[0]["error"] or "b -> a -> b" in invalid[0]["error"]
    assert "cycle" in models["p"].requests[1].prompt_text, "the planner is told what was wrong"


async def test_unrepairable_plan_falls_back_to_a_single_step_and_says_why() -> None:
    bad = plan_json(step("a", "reserch"))
    net, models = network(
        [
            {"name": "planner", "capabilities": ["plan"], "model": "p"},
            {"name": "researcher", "capabilities": ["research"], "model": "r"},
        ],
        {"p": lambda r: bad, "r": lambda r: "answered directly"},
        limits={"plan_repairs": 1},
    )
    async with net:
        result = await net.ask("something")
    assert len(models["p"].requests) == 2
    fallback = [d for d in result.decisions if d["name"] == "plan_fallback"]
    assert fallback and "unknown capability 'reserch'" in fallback[0]["errors"][0]
    assert result.plan is not None and result.plan.intent == "fallback"
    assert result.answer == "answered directly"


async def test_specialist_that_dies_mid_task_is_rerouted_and_the_run_completes() -> None:
    holding = asyncio.Event()

    async def dies(request: ModelRequest) -> str:
        holding.set()
        await asyncio.Event().wait()  # never answers: the process is about to die
        return ""

    net, _ = network(
        [
            {"name": "cheap", "capabilities": ["research"], "model": "a", "quality": 0.9},
            {"name": "backup", "capabilities": ["research"], "model": "b", "quality": 0.9},
        ],
        {"a": dies, "b": lambda r: "backup answer\nCONFIDENCE: 0.9"},
        routing={"strategy": "cheapest"},
    )
    net.models["a"].price.input_per_1k = 0.0  # cheap is chosen first
    net.models["b"].price = type(net.models["b"].price)(input_per_1k=1.0, output_per_1k=1.0)
    async with net:
        run = asyncio.create_task(net.ask("look it up"))
        await holding.wait()
        await net.kill("cheap")
        result = await run
    assert result.status == "ok"
    assert result.answer == "backup answer"
    reroutes = [d for d in result.decisions if d["name"] == "reroute"]
    assert reroutes and reroutes[0]["agent"] == "cheap"
    assert "vanished" in reroutes[0]["reason"]
    assert result.step("answer").agent == "backup"


async def test_failed_step_is_retried_on_another_agent() -> None:
    def broken(request: ModelRequest) -> str:
        raise RuntimeError("model server exploded")

    net, _ = network(
        [
            {"name": "first", "capabilities": ["research"], "model": "a", "quality": 0.95},
            {"name": "second", "capabilities": ["research"], "model": "b", "quality": 0.6},
        ],
        {"a": broken, "b": lambda r: "ok from second"},
    )
    async with net:
        result = await net.ask("look it up")
    assert result.answer == "ok from second"
    retry = [d for d in result.decisions if d["name"] == "retry"]
    assert retry and "model server exploded" in retry[0]["error"]
    assert [c.status for c in result.step("answer").calls] == ["failed", "ok"]


async def test_step_failing_everywhere_names_the_step_and_the_errors() -> None:
    def broken(request: ModelRequest) -> str:
        raise RuntimeError("always down")

    net, _ = network(
        [{"name": "only", "capabilities": ["research"], "model": "a"}],
        {"a": broken},
        limits={"step_retries": 1},
    )
    async with net:
        with pytest.raises(StepFailed, match="always down") as info:
            await net.ask("look it up")
    assert info.value.step_id == "answer"


async def test_step_limit_ends_the_run_with_an_error_naming_it() -> None:
    plan = plan_json(
        step("a", "research"), step("b", "research", ["a"]), step("c", "research", ["b"])
    )
    net, _ = network(
        [
            {"name": "planner", "capabilities": ["plan"], "model": "p"},
            {"name": "researcher", "capabilities": ["research"], "model": "r"},
        ],
        {"p": lambda r: plan, "r": lambda r: "x"},
        limits={"max_steps": 3},
    )
    async with net:
        with pytest.raises(RunLimitExceeded, match="max_steps=3") as info:
            await net.ask("chain")
    partial = info.value.run
    assert [s.id for s in partial.steps if s.status == "ok"] == ["plan", "a", "b"]


async def test_cost_cap_cuts_the_answer_to_what_is_left() -> None:
    net, models = network(
        [{"name": "researcher", "capabilities": ["research"], "model": "r"}],
        {"r": lambda r: "word " * 400},
        limits={"max_cost_usd": 0.001},
    )
    models["r"].price.output_per_1k = 0.01  # ~500 tokens = $0.005 > cap
    async with net:
        result = await net.ask("expensive")
    # the model was asked for no more than the cap pays for, and kept to it
    assert models["r"].requests[0].max_tokens in (99, 100)  # $0.001 at $0.01/1k, less rounding
    assert 0 < result.usage.cost_usd <= 0.001
    assert len(result.answer) < len("word " * 400)


async def test_unknown_capability_in_a_given_plan_is_named() -> None:
    net, _ = network(
        [{"name": "researcher", "capabilities": ["research"], "model": "r"}], {"r": lambda r: "x"}
    )
    plan = Plan(steps=[Step(id="s", capability="sumarise", instruction="x")])
    async with net:
        with pytest.raises(UnknownCapability, match="'sumarise' in step 's'; known: research"):
            await net.ask("x", plan=plan)


async def test_arithmetic_request_skips_decomposition() -> None:
    net, models = network(
        [
            {"name": "planner", "capabilities": ["plan"], "model": "p"},
            {"name": "calc", "capabilities": ["arithmetic"], "tool": "arithmetic"},
        ],
        {"p": lambda r: "should not be asked"},
    )
    async with net:
        result = await net.ask("What is (17 * 23) + 4?")
    assert result.answer.endswith("= 395")
    assert models["p"].requests == []
    assert result.plan is not None and result.plan.intent == "direct:arithmetic"


async def test_agent_can_ask_another_capability_mid_task() -> None:
    async def checker(task: Task, ctx: Any) -> str:
        verdict = await ctx.ask("fact_check", f"is this right: {task.instruction}")
        return f"checked: {verdict}"

    import sys
    import types

    mod = types.ModuleType("rede_test_tools")
    mod.checker = checker  # type: ignore[attr-defined]
    sys.modules["rede_test_tools"] = mod
    net, _ = network(
        [
            {"name": "asker", "capabilities": ["research"], "tool": "rede_test_tools:checker"},
            {"name": "checker", "capabilities": ["fact_check"], "model": "f"},
        ],
        {"f": lambda r: "yes, correct\nCONFIDENCE: 0.9"},
    )
    async with net:
        result = await net.ask("the sky is blue")
    assert result.answer == "checked: yes, correct"
    kinds = [e.kind for e in result.envelopes]
    assert "input_request" in kinds and "input_reply" in kinds


async def test_malformed_message_to_an_agent_is_dead_lettered_and_the_run_goes_on() -> None:
    net, _ = network(
        [{"name": "researcher", "capabilities": ["research"], "model": "r"}],
        {"r": lambda r: "fine"},
    )
    async with net:
        assert net.bus is not None
        await net.bus.publish_raw(Topic.task("research", "researcher"), b"{garbage")
        result = await net.ask("still works?")
        assert result.answer == "fine"
        assert net.bus.stats.rejected["malformed"] == 1


async def test_run_record_accounts_every_call() -> None:
    plan = plan_json(step("a", "research"), step("b", "research"), step("w", "write", ["a", "b"]))
    net, _ = network(
        [
            {"name": "planner", "capabilities": ["plan"], "model": "p"},
            {"name": "researcher", "capabilities": ["research"], "model": "r"},
            {"name": "writer", "capabilities": ["write"], "model": "w"},
            {"name": "synth", "capabilities": ["synthesise"], "model": "s"},
        ],
        {
            "p": lambda r: plan,
            "r": lambda r: "facts",
            "w": lambda r: "text",
            "s": lambda r: "final",
        },
    )
    async with net:
        result = await net.ask("x")
    assert result.answer == "final"
    assert result.usage.calls == 5 == sum(len(s.calls) for s in result.steps)
    assert result.usage.total_tokens == sum(s.usage.total_tokens for s in result.steps)
    assert [e.kind for e in result.envelopes].count("task") == 5
    assert [e.kind for e in result.envelopes].count("result") == 5
    assert result.critical_path[0] == "plan" and result.critical_path[-1] == "synthesis"
    assert result.sources == {"scripted"}
    assert not result.simulated


@pytest.mark.parametrize(
    ("reply_to", "why"),
    [
        ("not-a-topic", "not a Rede topic"),
        ("rede.task.research.researcher", "not a reply or inbox topic"),  # another agent's queue
        ("rede.events", "not a reply or inbox topic"),
    ],
)
async def test_task_with_an_invalid_reply_topic_is_dead_lettered_and_the_agent_lives(
    reply_to: str, why: str
) -> None:
    net, models = network(
        [{"name": "researcher", "capabilities": ["research"], "model": "r"}],
        {"r": lambda r: "fine"},
    )
    async with net:
        assert net.bus is not None
        dead = await net.bus.subscribe(Topic.dead())
        task = Task(capability="research", instruction="x")
        bad = Envelope(sender="someone", reply_to=reply_to, payload=task)
        await net.bus.publish(Topic.task("research", "researcher"), bad)
        letter = await dead.receive(timeout=5)
        assert isinstance(letter.envelope.payload, ErrorPayload)
        assert "reply_to" in letter.envelope.payload.message
        assert why in letter.envelope.payload.message
        assert models["r"].requests == []  # the injected task was never executed
        result = await net.ask("still works?")
    assert result.answer == "fine"
    assert net.bus.stats.rejected["malformed"] == 1


async def test_specialist_returning_no_result_fails_the_call_not_the_agent() -> None:
    class Sloppy(Specialist):
        async def handle(self, task: Task, ctx: Any) -> Any:
            return "a bare string"

    bus = MemoryBus()
    runner = AgentRunner(bus, SpecialistSpec("sloppy", ["research"], Sloppy()))
    serving = asyncio.create_task(runner.run())
    try:
        await runner.ready.wait()
        replies = await bus.subscribe(Topic.reply("r1"), group="orchestrator")
        task = Envelope(
            sender="test",
            reply_to=str(Topic.reply("r1")),
            payload=Task(capability="research", instruction="x"),
        )
        for _ in range(2):  # the agent is still there for the second task
            await bus.publish(Topic.task("research", "sloppy"), task)
            reply = (await replies.receive(timeout=5)).envelope.payload
            assert isinstance(reply, Result) and reply.status == "failed"
            assert "returned str, not a Result or a Critique" in (reply.error or "")
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await bus.aclose()


async def test_a_critic_answering_with_a_result_leaves_the_draft_unreviewed_saying_why() -> None:
    import sys
    import types

    mod = types.ModuleType("rede_test_critic")
    mod.critic = lambda task: "looks fine to me"  # type: ignore[attr-defined]
    sys.modules["rede_test_critic"] = mod
    net, _ = network(
        [
            {"name": "planner", "capabilities": ["plan"], "model": "p"},
            {"name": "writer", "capabilities": ["write"], "model": "w"},
            {"name": "critic", "capabilities": ["critique"], "tool": "rede_test_critic:critic"},
        ],
        {"p": lambda r: plan_json(step("draft", "write", review=True)), "w": lambda r: "draft"},
    )
    async with net:
        result = await net.ask("write something")
    assert result.status == "ok" and result.answer == "draft"
    (failed,) = [d for d in result.decisions if d["name"] == "critique_failed"]
    assert "replied with a result to a 'critique' task" in failed["error"]


async def test_plan_with_a_critique_step_is_sent_back_not_run() -> None:
    critique_step = plan_json(step("draft", "write"), step("check", "critique", ["draft"]))
    good = plan_json(step("draft", "write", review=True))
    net, models = network(
        [
            {"name": "planner", "capabilities": ["plan"], "model": "p"},
            {"name": "writer", "capabilities": ["write"], "model": "w"},
            {"name": "critic", "capabilities": ["critique"], "model": "c"},
        ],
        {
            "p": planner_sequence(critique_step, good),
            "w": lambda r: "draft",
            "c": critic_sequence(True),
        },
    )
    async with net:
        result = await net.ask("write something")
        with pytest.raises(PlanError, match="'check' has capability 'critique'"):
            await net.ask("write", plan=Plan.model_validate_json(critique_step))
    assert result.status == "ok" and result.answer == "draft"
    (invalid,) = [d for d in result.decisions if d["name"] == "plan_invalid"]
    assert '"review": true' in invalid["error"]
    assert "review" in models["p"].requests[1].prompt_text, "the planner is told what to do"


async def test_an_observer_failing_at_the_start_leaves_nothing_running() -> None:
    def observer(event: Event) -> None:
        if event.name == "run_started":
            raise RuntimeError("observer broke")

    net, _ = network(
        [{"name": "researcher", "capabilities": ["research"], "model": "r"}],
        {"r": lambda r: "fine"},
    )
    async with net:
        with pytest.raises(RuntimeError, match="observer broke"):
            await net.ask("x", observer=observer, run_id="run-observed")
        left = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "read_replies"]
        assert left == [], "the run's reply reader was left running"
        assert (await net.ask("again", run_id="run-next")).answer == "fine"


async def test_a_late_reply_after_a_reroute_is_accounted_not_used() -> None:
    release = asyncio.Event()
    ignored = asyncio.Event()

    class Watching(Ledger):
        def record_decision(self, run_id: str, name: str, **data: Any) -> None:
            super().record_decision(run_id, name, **data)
            if name == "duplicate_ignored":
                ignored.set()

    async def slow(request: ModelRequest) -> str:
        # a call that does not stop when the task's deadline cancels it (a blocking request,
        # say) and answers only once the step was re-routed
        with contextlib.suppress(asyncio.CancelledError):
            await release.wait()
        await release.wait()
        return "late answer " + "word " * 50

    async def backup(request: ModelRequest) -> str:
        release.set()
        await ignored.wait()  # the late reply has reached the run before this one
        return "backup answer"

    net, models = network(
        [
            {"name": "slow", "capabilities": ["research"], "model": "a", "quality": 0.9},
            {"name": "backup", "capabilities": ["research"], "model": "b", "quality": 0.9},
        ],
        {"a": slow, "b": backup},
        limits={"step_timeout_s": 0.3},
    )
    net.ledger = Watching()
    models["b"].price = type(models["b"].price)(input_per_1k=1.0, output_per_1k=1.0)
    async with net:
        result = await net.ask("look it up")
    assert result.answer == "backup answer"
    calls = result.step("answer").calls
    assert [(c.agent, c.status) for c in calls] == [("slow", "failed"), ("backup", "ok")]
    assert "came after the step moved on" in (calls[0].error or "")
    assert result.usage.calls == 2 == sum(len(s.calls) for s in result.steps)
    late_tokens = calls[0].usage.total_tokens
    assert late_tokens > 50, "the late reply's work is on the record"
    assert result.usage.total_tokens == sum(c.usage.total_tokens for c in calls)
    assert net.orchestrator is not None
    assert net.orchestrator.budget.spent_tokens == result.usage.total_tokens


async def test_the_last_steps_events_reach_the_bus_before_the_run_returns() -> None:
    net, _ = network(
        [
            {"name": "planner", "capabilities": ["plan"], "model": "p"},
            {"name": "researcher", "capabilities": ["research"], "model": "r"},
            {"name": "synth", "capabilities": ["synthesise"], "model": "s"},
        ],
        {
            "p": lambda r: plan_json(step("a", "research"), step("b", "research")),
            "r": lambda r: "facts",
            "s": lambda r: "final",
        },
    )
    async with net:
        assert net.bus is not None
        events = await net.bus.subscribe(Topic.events())
        await net.ask("x")
        end = Envelope(sender="test", payload=Event(name="test_end"))
        await net.bus.publish(Topic.events(), end)
        seen = []
        while True:
            event = (await events.receive(timeout=5)).envelope.payload
            assert isinstance(event, Event)
            if event.name == "test_end":
                break
            seen.append((event.name, event.data.get("step")))
            if event.name == "run_finished":
                finished = event.data
    assert ("step_finished", "synthesis") in seen
    # observers on the bus learn that the run ended, and how
    assert seen[-1] == ("run_finished", None)
    assert finished["status"] == "ok" and finished["total_tokens"] > 0


def test_a_network_with_no_live_agent_is_told_so() -> None:
    with pytest.raises(UnknownCapability, match="no live agent serves anything"):
        main_capability(set())
    with pytest.raises(UnknownCapability, match="only plan/critique/synthesise agents"):
        main_capability({"plan", "critique"})


async def test_an_invalid_run_id_is_named() -> None:
    net, _ = network(
        [{"name": "researcher", "capabilities": ["research"], "model": "r"}],
        {"r": lambda r: "fine"},
    )
    async with net:
        with pytest.raises(ConfigError, match="invalid run_id 'my run'"):
            await net.ask("x", run_id="my run")


async def test_a_run_whose_replies_cannot_be_read_fails_at_once_naming_why() -> None:
    class Failing(Ledger):
        def record_envelope(self, direction: Any, env: Envelope) -> None:
            if direction == "received":
                raise OSError("disk full")
            super().record_envelope(direction, env)

    net, _ = network(
        [{"name": "researcher", "capabilities": ["research"], "model": "r"}],
        {"r": lambda r: "fine"},
        limits={"step_timeout_s": 30, "wall_time_s": 5},
    )
    net.ledger = Failing()
    async with net:
        with pytest.raises(BusError, match="OSError: disk full") as info:
            await net.ask("x")  # not a wait of step_timeout_s for a reply that cannot come
    assert info.value.run.status == "failed"


async def test_an_agent_stops_quietly_when_its_bus_closes() -> None:
    bus = MemoryBus()
    runner = AgentRunner(bus, SpecialistSpec("echo", ["echo"], ToolSpecialist("echo", echo_tool)))
    serving = asyncio.create_task(runner.run())
    await runner.ready.wait()
    await bus.aclose()
    assert await serving is None


async def test_asking_the_critic_a_question_fails_the_question_at_once() -> None:
    async def asker(task: Task, ctx: Any) -> str:
        return await ctx.ask("critique", "is this good?")

    import sys
    import types

    mod = types.ModuleType("rede_test_critique_asker")
    mod.asker = asker  # type: ignore[attr-defined]
    sys.modules["rede_test_critique_asker"] = mod
    net, _ = network(
        [
            {
                "name": "asker",
                "capabilities": ["research"],
                "tool": "rede_test_critique_asker:asker",
            },
            {"name": "critic", "capabilities": ["critique"], "model": "c"},
        ],
        {"c": critic_sequence(True)},
        limits={"step_timeout_s": 30, "wall_time_s": 5},
    )
    async with net:
        with pytest.raises(StepFailed, match="'critique' reviews a step's output"):
            await net.ask("check this")


async def test_a_plan_cannot_reuse_the_runs_own_step_ids() -> None:
    net, _ = network(
        [
            {"name": "researcher", "capabilities": ["research"], "model": "r"},
            {"name": "synth", "capabilities": ["synthesise"], "model": "s"},
        ],
        {"r": lambda r: "facts", "s": lambda r: "final"},
    )
    plan = Plan(
        steps=[
            Step(id="a", capability="research", instruction="x"),
            Step(id="synthesis", capability="synthesise", instruction="y", depends_on=["a"]),
        ]
    )
    async with net:
        with pytest.raises(PlanError, match="synthesis are the run's own"):
            await net.ask("x", plan=plan)


async def test_a_step_waits_for_its_absent_agent_to_come_back() -> None:
    """Every replica of a configured capability is gone for a moment (crashed, expired):
    the step waits on the registry for one to come back instead of failing at once."""
    waiting = asyncio.Event()

    def observer(event: Event) -> None:
        if event.name == "waiting_for_agent":
            waiting.set()

    net, _ = network(
        [{"name": "researcher", "capabilities": ["research"], "model": "r"}],
        {"r": lambda r: "found it"},
        limits={"step_timeout_s": 30},
    )
    plan = Plan(steps=[Step(id="s", capability="research", instruction="look")])
    async with net:
        assert (await net.ask("warm up", plan=plan)).status == "ok"
        await net.kill("researcher")
        await net.registry.wait_gone("researcher")
        run = asyncio.create_task(net.ask("look it up", plan=plan, observer=observer))
        await waiting.wait()
        net.start_runner(net.spec(net.config.agents[0]))  # the agent comes back
        result = await run
    assert result.status == "ok", result.error
    assert result.answer == "found it"
    waited = [d for d in result.decisions if d["name"] == "wait_for_agent"]
    assert waited and waited[0]["capability"] == "research"


async def test_a_step_whose_agent_never_comes_back_fails_naming_it_and_the_timeout() -> None:
    net, _ = network(
        [
            {"name": "researcher", "capabilities": ["research"], "model": "r"},
            {"name": "writer", "capabilities": ["write"], "model": "w"},
        ],
        {"r": lambda r: "found it", "w": lambda r: "written"},
        limits={"step_timeout_s": 0.3},
    )
    plan = Plan(steps=[Step(id="s", capability="research", instruction="look")])
    async with net:
        assert (await net.ask("warm up", plan=plan)).status == "ok"
        await net.kill("researcher")
        await net.registry.wait_gone("researcher")
        with pytest.raises(StepFailed) as info:
            await net.ask("look it up", plan=plan)
    assert info.value.step_id == "s"
    message = str(info.value)
    assert "no live agent serves 'research'" in message
    assert "none came back within 0.3s (the step timeout" in message
    assert not isinstance(info.value, UnknownCapability)


async def test_a_call_that_timed_out_on_the_only_replica_is_retried_on_it() -> None:
    calls = 0

    async def hangs_once(request: ModelRequest) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # the first call never answers
        return "second try\nCONFIDENCE: 0.9"

    net, _ = network(
        [{"name": "only", "capabilities": ["research"], "model": "r"}],
        {"r": hangs_once},
        limits={"step_timeout_s": 0.3, "step_retries": 1},
    )
    plan = Plan(steps=[Step(id="s", capability="research", instruction="look")])
    async with net:
        result = await net.ask("look it up", plan=plan)
    assert result.status == "ok", result.error
    assert result.answer == "second try"
    routes = [d["agent"] for d in result.decisions if d["name"] == "route"]
    assert routes == ["only", "only"]
    (reroute,) = [d for d in result.decisions if d["name"] == "reroute"]
    assert "no reply within 0.3s" in reroute["reason"]


async def test_a_failed_call_goes_to_another_live_agent_before_the_same_one_again() -> None:
    tried: list[str] = []

    def answer(name: str, fails: bool) -> Handler:
        def handler(request: ModelRequest) -> str:
            tried.append(name)
            if fails and tried.count(name) == 1:
                raise RuntimeError(f"{name} broke")
            return f"{name} answer\nCONFIDENCE: 0.9"

        return handler

    net, models = network(
        [
            {"name": "first", "capabilities": ["research"], "model": "a", "quality": 0.9},
            {"name": "second", "capabilities": ["research"], "model": "b", "quality": 0.9},
        ],
        {"a": answer("first", True), "b": answer("second", True)},
        limits={"step_retries": 2},
    )
    models["b"].price = type(models["b"].price)(input_per_1k=1.0, output_per_1k=1.0)
    plan = Plan(steps=[Step(id="s", capability="research", instruction="look")])
    async with net:
        result = await net.ask("look it up", plan=plan)
    assert tried == ["first", "second", "first"]
    assert result.answer == "first answer"


class _Counted:
    """A delivery that counts its touches and says when it has had ``enough``."""

    def __init__(self, enough: int) -> None:
        self.touches = 0
        self.enough = enough
        self.reached = asyncio.Event()

    async def touch(self) -> bool:
        self.touches += 1
        if self.touches >= self.enough:
            self.reached.set()
        return True


async def test_leases_sharing_one_timer_are_each_renewed_on_their_own_period() -> None:
    renewals = Renewals()
    slow, fast, late = _Counted(2), _Counted(4), _Counted(1)
    loop = asyncio.get_running_loop()
    slow_lease = Lease(slow, 0.04, renewals=renewals)
    fast_lease = Lease(fast, 0.02, renewals=renewals)
    late_lease = Lease(late, 0.02, until=loop.time() + 0.01, renewals=renewals)
    async with asyncio.timeout(5):
        await slow.reached.wait()
        await fast.reached.wait()
        await late_lease.stopped.wait()  # past its deadline: stopped, never touched
    assert late.touches == 0
    assert fast.touches >= 2 * slow.touches - 1  # each on its own period, not the other's
    for lease in (slow_lease, fast_lease, late_lease):
        await lease.end()
    ended = (slow.touches, fast.touches)
    await asyncio.sleep(0.1)  # nothing to wait on: an ended lease is never touched again
    assert (slow.touches, fast.touches) == ended
