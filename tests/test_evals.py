"""The BIG-Bench Hard harness: scoring, the replay backend, prompts, runs, reports, CLI.

Tests that need BBH data read a small cut of it in ``tests/fixtures/bbh`` (eight tasks, a few
examples and recorded completions each; see ``tests/fixtures/README.md``). Full benchmark runs
read the whole set from ``../shared/data/bbh``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rede.errors import ConfigError, ModelError
from rede.evals import BBH, ModelSystem, compare, paper_averages, run_bbh, score
from rede.evals.cli import bench_app
from rede.evals.scoring import extract_answer, normalise
from rede.evals.systems import Answer, NetworkSystem
from rede.models import ModelRequest, ScriptedModel, model_from_spec
from rede.models.replay import Recording, RecordingNotFound, ReplayModel
from rede.protocol.messages import Usage

DATA = Path(__file__).resolve().parent / "fixtures" / "bbh"
COT = DATA / "outputs" / "code-davinci-002-cot"
DIRECT = DATA / "outputs" / "code-davinci-002-direct"


@pytest.fixture
def data() -> BBH:
    return BBH(DATA)


def recorded(run: Path, task: str) -> list[dict[str, Any]]:
    return json.loads((run / f"{task}.json").read_text())["outputs"]


# --------------------------------------------------------------------------- scoring


@pytest.mark.parametrize(
    ("task", "mode", "completion", "target", "answer", "correct"),
    [
        ("date_understanding", "cot", "... 12/14/1937. So the answer is (D).", "(D)", "(D)", True),
        ("date_understanding", "cot", "So the answer is (D). Let me check.", "(D)", "(D)", True),
        ("date_understanding", "cot", "So the answer is d.", "(D)", "d", True),
        ("hyperbaton", "cot", "So the answer is (A) and (B).", "(A)", "(A) and (B)", False),
        ("date_understanding", "cot", "The date is 12/14/1937.", "(D)", "", False),
        ("dyck_languages", "cot", "So the answer is } ] >.", "} ] >", "} ] >", True),
        ("dyck_languages", "cot", "So the answer is }]>.", "} ] >", "}]>", True),
        ("dyck_languages", "cot", "So the answer is } ].", "} ] >", "} ]", False),
        (
            "word_sorting",
            "cot",
            "So the answer is arson aspect census.",
            "arson aspect census",
            "arson aspect census",
            True,
        ),
        (
            "word_sorting",
            "cot",
            "So the answer is arson, aspect, census.",
            "arson aspect census",
            "arson, aspect, census",
            True,
        ),
        (
            "word_sorting",
            "cot",
            "So the answer is aspect arson census.",
            "arson aspect census",
            "aspect arson census",
            False,
        ),
        ("boolean_expressions", "cot", "So the answer is true.", "True", "true", True),
        ("formal_fallacies", "cot", "So the answer is invalid.", "valid", "invalid", False),
        ("sports_understanding", "direct", "Yes", "yes", "Yes", True),
        ("web_of_lies", "direct", "No\n\nQ: Question: Fidel lies.", "No", "No", True),
        ("multistep_arithmetic_two", "cot", "= -219. So the answer is -219.", "-219", "-219", True),
        ("object_counting", "cot", "So the answer is 1,000.", "1000", "1,000", True),
        ("object_counting", "direct", "8.0", "8", "8.0", True),
        ("object_counting", "direct", "12 apples", "12", "12", True),
        ("ruin_names", "direct", "(C)\n\nQ: Which of the following", "(C)", "(C)", True),
        ("ruin_names", "direct", "(C) one of our dinosaurs is pissing", "(C)", "(C)", True),
        (
            "snarks",
            "direct",
            "[simulated sim-7b] Reasoning step by step. So the answer is (B).\nCONFIDENCE: 0.8",
            "(B)",
            "(B)",
            True,
        ),
    ],
)
def test_answer_extraction_and_exact_match(
    task: str, mode: Any, completion: str, target: str, answer: str, correct: bool
) -> None:
    scored = score(completion, target, task, mode)
    assert scored.answer == answer
    assert scored.correct is correct


def test_normalised_forms_per_answer_format() -> None:
    assert normalise("(b)", "snarks") == "(B)"
    assert normalise("False.", "boolean_expressions") == "False"
    assert normalise("NO", "sports_understanding") == "no"
    assert normalise(" ]  ) ) ", "dyck_languages") == "] ) )"
    assert normalise("\u22123", "multistep_arithmetic_two") == "-3"
    assert extract_answer("no marker here", "navigate", "cot") == ""


def test_paper_averages_average_families_first() -> None:
    acc = {
        "logical_deduction_three_objects": 90.0,
        "logical_deduction_five_objects": 60.0,
        "logical_deduction_seven_objects": 30.0,
        "snarks": 40.0,
    }
    out = paper_averages(acc)
    assert out["all"] == pytest.approx(50.0)  # (60 + 40) / 2, not (90+60+30+40) / 4
    assert out["algorithmic"] == pytest.approx(60.0)
    assert out["nlp"] == pytest.approx(40.0)


# --------------------------------------------------------------------------- replay


def _recordings_folder(tmp_path: Path) -> Path:
    """A folder of two runs in the BBH outputs format, with made-up content."""
    for run, reply in (("run-cot", "It is 4. So the answer is 4."), ("run-direct", "4")):
        cue = "A: Let's think step by step." if run == "run-cot" else "A:"
        shots = "Add numbers.\n\nQ: 1 + 1 =\n" + (
            "A: Let's think step by step. 2." if run == "run-cot" else "A: 2"
        )
        folder = tmp_path / "recs" / run
        folder.mkdir(parents=True)
        outputs = [
            {"input": f"{shots}\n\nQ: 2 + 2 =\n{cue}", "prediction": reply, "target": "4"},
            {
                "input": f"{shots}\n\nQ: Which statement is sarcastic? (A) The NBA is fun\n{cue}",
                "prediction": "(A)",
                "target": "(A)",
            },
        ]
        (folder / "add.json").write_text(json.dumps({"outputs": outputs}))
    return tmp_path / "recs"


async def test_replay_serves_the_recording_a_prompt_equals_or_contains(data: BBH) -> None:
    model = model_from_spec(f"replay:{COT / 'boolean_expressions.json'}")
    assert isinstance(model, ReplayModel)
    assert model.source == "replay"
    rec = recorded(COT, "boolean_expressions")[1]
    exact = await model.complete(ModelRequest.of(rec["input"]))
    assert exact.text == rec["prediction"]
    assert exact.usage.estimated and exact.usage.source == "replay" and exact.usage.calls == 1
    # inside a larger prompt: a system message before, an instruction after the cue
    wrapped = ModelRequest.of(
        rec["input"] + "\nEnd with CONFIDENCE: x.", system="You are a careful solver."
    )
    assert (await model.complete(wrapped)).text == rec["prediction"]
    # whitespace differences do not matter
    spaced = rec["input"].replace("\n\nQ: ", "\n\n\nQ:  ")
    assert (await model.complete(ModelRequest.of(spaced))).text == rec["prediction"]


async def test_replay_miss_names_the_prompt_and_the_recordings(data: BBH) -> None:
    model = ReplayModel.from_path(COT / "boolean_expressions.json")
    with pytest.raises(RecordingNotFound) as info:
        await model.complete(ModelRequest.of("Q: What is the capital of Portugal?\nA:"))
    assert isinstance(info.value, ModelError)
    assert "What is the capital of Portugal?" in str(info.value)
    assert "boolean_expressions.json" in str(info.value)


async def test_replay_folder_of_folders_cues_prefixes_price_and_latency(tmp_path: Path) -> None:
    folder = _recordings_folder(tmp_path)
    model = ReplayModel.from_path(folder, price={"input_per_1k": 1.0, "output_per_1k": 2.0})
    assert model.name == "replay:recs" and model.size == 4
    cot = await model.complete(ModelRequest.of("Q: 2 + 2 =\nA: Let's think step by step."))
    direct = await model.complete(ModelRequest.of("Some other shots\n\nQ: 2 + 2 =\nA:"))
    assert cot.text == "It is 4. So the answer is 4." and direct.text == "4"
    assert cot.usage.cost_usd > 0
    # a question cut short (as one BBH task file does) is served the one it starts
    cut = await model.complete(ModelRequest.of("Q: Which statement is sarcastic? (A) The NB\nA:"))
    assert cut.text == "(A)" and model.hits["prefix"] == 1
    with pytest.raises(RecordingNotFound):
        await model.complete(ModelRequest.of("Q: 2 + 3 =\nA:"))
    slow = ReplayModel([Recording("Q: x\nA:", "y")], latency_s=0.01)
    assert (await slow.complete(ModelRequest.of("Q: x\nA:"))).usage.latency_s == 0.01


async def test_replay_cuts_a_recording_only_where_it_surely_passes_max_tokens() -> None:
    # 2,400 characters in 300 words: over 512 tokens by the 4-characters estimate, yet a real
    # tokenizer may fit it in 512 (no tokenizer makes fewer tokens than words): served whole
    finished = "x" * 7 + (" abcdefg" * 299) + " So the answer is valid."
    model = ReplayModel([Recording("Q: a\nA:", finished)])
    whole = await model.complete(ModelRequest.of("Q: a\nA:", max_tokens=512))
    assert whole.text == finished and whole.finish_reason == "stop"
    assert whole.usage.completion_tokens <= 512 and whole.usage.estimated
    # more words than max_tokens: surely cut, after the last word that fits
    cut = await model.complete(ModelRequest.of("Q: a\nA:", max_tokens=3))
    assert cut.text == "xxxxxxx abcdefg abcdefg" and cut.finish_reason == "length"
    # a recording that counts its tokens is cut by its count
    counted = Recording("Q: b\nA:", "one two three four", prompt_tokens=5, completion_tokens=8)
    model = ReplayModel([counted])
    half = await model.complete(ModelRequest.of("Q: b\nA:", max_tokens=4))
    assert half.text == "one two t" and half.usage.completion_tokens == 4
    assert half.finish_reason == "length" and not half.usage.estimated
    fits = await model.complete(ModelRequest.of("Q: b\nA:", max_tokens=8))
    assert fits.text == counted.prediction and fits.usage.completion_tokens == 8


def test_replay_rejects_missing_and_malformed_recordings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="do not exist"):
        ReplayModel.from_path(tmp_path / "nope")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"examples": []}))
    with pytest.raises(ConfigError, match="in no known format"):
        ReplayModel.from_path(bad)
    bbh_shaped = tmp_path / "bbh.json"
    bbh_shaped.write_text(json.dumps({"outputs": {"input": "x"}}))
    with pytest.raises(ConfigError, match="no 'outputs' list"):
        ReplayModel.from_path(bbh_shaped)


# --------------------------------------------------------------------------- prompts


@pytest.mark.parametrize("mode", ["cot", "direct"])
@pytest.mark.parametrize(
    "task",
    [
        "boolean_expressions",
        "date_understanding",
        "dyck_languages",
        "snarks",
        "tracking_shuffled_objects_three_objects",
        "word_sorting",
    ],
)
def test_prompts_match_the_recorded_inputs_exactly(data: BBH, task: str, mode: Any) -> None:
    run = COT if mode == "cot" else DIRECT
    prompt = data.prompt(task)
    recs = recorded(run, task)
    examples = data.examples(task, limit=len(recs))
    assert len(recs) == len(examples) >= 2
    for example, rec in zip(examples, recs, strict=True):
        assert prompt.build(example.input, mode) == rec["input"]


def test_unknown_task_names_the_valid_ones(data: BBH) -> None:
    with pytest.raises(ConfigError, match=r"unknown task 'nope'; valid: boolean_expressions, "):
        data.resolve("boolean_expressions,nope")


def test_missing_data_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        BBH(tmp_path / "missing")


# --------------------------------------------------------------------------- harness


class Counting:
    """A System wrapper that counts the prompts it is asked."""

    def __init__(self, inner: ModelSystem) -> None:
        self.inner = inner
        self.name = inner.name
        self.source = inner.source
        self.asked: list[tuple[str, int]] = []

    async def answer(self, prompt: str, *, metadata: dict[str, Any]) -> Answer:
        self.asked.append((metadata["task"], metadata["index"]))
        return await self.inner.answer(prompt, metadata=metadata)

    async def aclose(self) -> None:
        await self.inner.aclose()


TASKS3 = ["date_understanding", "dyck_languages", "sports_understanding"]


async def test_harness_summary_scores_the_replayed_predictions(data: BBH, tmp_path: Path) -> None:
    system = ModelSystem(ReplayModel.from_path(COT))
    summary = await run_bbh(
        system, data, out=tmp_path, tasks=TASKS3, limit=3, mode="cot", progress=False
    )
    saved = json.loads((tmp_path / "summary.json").read_text())
    for key in (
        "tasks",
        "average",
        "system",
        "source",
        "mean_latency_s",
        "mean_tokens",
        "mean_cost_usd",
        "mean_messages",
        "mode",
        "n",
    ):
        assert key in saved
    assert saved["source"] == "replay" and saved["system"] == "replay:code-davinci-002-cot"
    expected = {}
    for task in TASKS3:
        recs = recorded(COT, task)[:3]
        right = sum(score(r["prediction"], r["target"], task, "cot").correct for r in recs)
        expected[task] = 100.0 * right / 3
        assert saved["tasks"][task]["n"] == 3
        assert saved["tasks"][task]["accuracy"] == pytest.approx(expected[task])
        assert len((tmp_path / f"{task}.jsonl").read_text().splitlines()) == 3
    assert saved["average"] == pytest.approx(sum(expected.values()) / 3)
    assert saved["mean_messages"] == 1.0 and saved["errors"] == 0
    assert summary.tokens_estimated


async def test_rerun_with_a_larger_limit_runs_only_new_examples(data: BBH, tmp_path: Path) -> None:
    replay = ReplayModel.from_path(DIRECT)
    first = Counting(ModelSystem(replay))
    await run_bbh(
        first, data, out=tmp_path, tasks=TASKS3[:2], limit=2, mode="direct", progress=False
    )
    assert len(first.asked) == 4
    second = Counting(ModelSystem(replay))
    summary = await run_bbh(
        second, data, out=tmp_path, tasks=TASKS3[:2], limit=3, mode="direct", progress=False
    )
    assert sorted(second.asked) == [(t, 2) for t in sorted(TASKS3[:2])]
    assert all(s.n == 3 for s in summary.tasks.values())
    third = Counting(ModelSystem(replay))
    await run_bbh(
        third, data, out=tmp_path, tasks=TASKS3[:2], limit=3, mode="direct", progress=False
    )
    assert third.asked == []
    with pytest.raises(ConfigError, match="holds results of mode 'direct'"):
        await run_bbh(
            third, data, out=tmp_path, tasks=TASKS3[:2], limit=3, mode="cot", progress=False
        )


async def test_failed_examples_are_recorded_then_retried(data: BBH, tmp_path: Path) -> None:
    empty = ModelSystem(ReplayModel([], name="replay:empty"))
    summary = await run_bbh(
        empty, data, out=tmp_path, tasks="navigate", limit=2, mode="cot", progress=False
    )
    assert summary.errors == 2 and summary.tasks["navigate"].accuracy == 0.0
    line = json.loads((tmp_path / "navigate.jsonl").read_text().splitlines()[0])
    assert line["error"].startswith("RecordingNotFound")
    retry = Counting(ModelSystem(ReplayModel.from_path(COT / "navigate.json", name="replay:empty")))
    summary = await run_bbh(
        retry, data, out=tmp_path, tasks="navigate", limit=2, mode="cot", progress=False
    )
    assert len(retry.asked) == 2 and summary.errors == 0


async def test_concurrency_is_bounded(data: BBH, tmp_path: Path) -> None:
    model = ScriptedModel(lambda r: "So the answer is (A).", delay_s=0.01)
    summary = await run_bbh(
        ModelSystem(model),
        data,
        out=tmp_path,
        tasks=TASKS3[:1],
        limit=6,
        concurrency=3,
        progress=False,
    )
    assert model.max_in_flight == 3
    assert summary.source == "scripted" and summary.n == 6


# --------------------------------------------------------------------------- compare


async def test_compare_writes_report_and_chart_naming_sources(data: BBH, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    replay = ModelSystem(ReplayModel.from_path(COT))
    scripted = ModelSystem(ScriptedModel(lambda r: "So the answer is (A).", name="always-a"))
    result = await compare(
        [replay, scripted], data, out=tmp_path, tasks=TASKS3[:2], limit=3, progress=False
    )
    text = result.markdown.read_text()
    assert "| replay:code-davinci-002-cot | **replay**: answers are recorded" in text
    assert "| always-a | **scripted**: answers written by a test script" in text
    for heading in ("Accuracy", "latency", "Cost per task", "Tokens per task", "Messages per task"):
        assert heading in text
    assert result.chart is not None and result.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in result.folders} == {"replay-code-davinci-002-cot", "always-a"}


# --------------------------------------------------------------------------- CLI


def test_cli_bbh_small_run(data: BBH, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        bench_app,
        [
            "bbh",
            "--model",
            f"replay:{COT}",
            "--data",
            str(DATA),
            "--tasks",
            "boolean_expressions,navigate",
            "--limit",
            "2",
            "--out",
            str(out),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "summary.json").read_text())
    assert set(saved["tasks"]) == {"boolean_expressions", "navigate"}
    assert "replayed" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", f"replay:{COT}", "--tasks", "nope"], "unknown task 'nope'; valid:"),
        (["--model", "nonsense"], "model spec 'nonsense' must be 'backend:argument'"),
        (["--model", "warp:9"], "unknown model backend 'warp'"),
        (["--model", "replay:/no/such/dir"], "do not exist"),
        ([], "give --model SPEC"),
    ],
)
def test_cli_errors_exit_non_zero_with_one_clear_line(
    data: BBH, tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(
        bench_app, ["bbh", "--data", str(DATA), "--out", str(tmp_path), *args]
    )
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())


def test_cli_missing_data_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        bench_app, ["bbh", "--model", "replay:x", "--data", str(tmp_path / "none")]
    )
    assert result.exit_code == 1
    assert "does not exist" in result.output and "--data" in result.output


# --------------------------------------------------------------------------- networks


async def test_network_system_runs_bbh_through_a_network(data: BBH, tmp_path: Path) -> None:
    pytest.importorskip("rede.network")
    yaml = tmp_path / "solo.yaml"
    yaml.write_text(
        "name: solo\n"
        f'models:\n  codex: {{spec: "replay:{COT / "navigate.json"}"}}\n'
        "agents:\n  - {name: solver, capabilities: [reason], model: codex}\n"
    )
    system = NetworkSystem(yaml)
    assert system.name == "network:solo" and system.source == "replay"
    try:
        summary = await run_bbh(
            system, data, out=tmp_path / "net", tasks="navigate", limit=2, progress=False
        )
    finally:
        await system.aclose()
    direct = await run_bbh(
        ModelSystem(ReplayModel.from_path(COT / "navigate.json")),
        data,
        out=tmp_path / "model",
        tasks="navigate",
        limit=2,
        progress=False,
    )
    assert summary.errors == 0
    assert summary.tasks["navigate"].accuracy == direct.tasks["navigate"].accuracy
    assert summary.mean_messages >= 2  # at least a task and its result
    assert summary.source == "replay"


# --------------------------------------------------------------------------- review fixes


def tiny_bbh(root: Path, prompt: str | None = None) -> BBH:
    """A BBH folder of one task (navigate, 4 examples) that needs no shared data."""
    (root / "tasks").mkdir(parents=True)
    (root / "cot-prompts").mkdir()
    examples = [{"input": f"Is {i} even?", "target": "No" if i % 2 else "Yes"} for i in range(4)]
    (root / "tasks" / "navigate.json").write_text(json.dumps({"examples": examples}))
    if prompt is None:
        prompt = (
            "canary\n-----\nAnswer yes or no.\n\nQ: Is 2 even?\n"
            "A: Let's think step by step.\n2 is even. So the answer is Yes."
        )
    (root / "cot-prompts" / "navigate.txt").write_text(prompt)
    return BBH(root)


def _yes(request: ModelRequest) -> str:
    return "So the answer is Yes."


async def test_a_record_cut_short_by_a_crash_does_not_swallow_the_next_one(
    tmp_path: Path,
) -> None:
    bench, out = tiny_bbh(tmp_path / "bbh"), tmp_path / "out"
    await run_bbh(ModelSystem(ScriptedModel(_yes)), bench, out=out, limit=2, progress=False)
    with (out / "navigate.jsonl").open("a") as f:
        f.write('{"task": "navigate", "index": 2, "tar')  # the crash: no newline
    again = Counting(ModelSystem(ScriptedModel(_yes)))
    await run_bbh(again, bench, out=out, limit=3, progress=False)
    assert again.asked == [("navigate", 2)]
    third = Counting(ModelSystem(ScriptedModel(_yes)))
    summary = await run_bbh(third, bench, out=out, limit=3, progress=False)
    assert third.asked == []  # the record of example 2 was read back, not re-run
    assert summary.tasks["navigate"].n == 3 and summary.errors == 0


async def test_completions_with_unicode_line_separators_are_read_back(tmp_path: Path) -> None:
    bench, out = tiny_bbh(tmp_path / "bbh"), tmp_path / "out"
    odd = ScriptedModel(lambda r: "Even.\u2028Next\x85line. So the answer is Yes.")
    await run_bbh(ModelSystem(odd), bench, out=out, limit=2, progress=False)
    again = Counting(ModelSystem(ScriptedModel(_yes)))
    summary = await run_bbh(again, bench, out=out, limit=2, progress=False)
    assert again.asked == []
    assert summary.tasks["navigate"].correct == 1


async def test_a_malformed_prompt_file_is_a_config_error(tmp_path: Path) -> None:
    bench = tiny_bbh(tmp_path / "bbh", prompt="canary\n-----\nno examples here\n")
    with pytest.raises(ConfigError, match="CoT prompt of 'navigate' has no 'Q: ' example"):
        await run_bbh(ModelSystem(ScriptedModel(_yes)), bench, out=tmp_path / "out", progress=False)


class HalfFailing:
    """Answers even examples (2 s, 100 tokens, 3 messages); odd ones fail."""

    name = "half-failing"
    source = "scripted"

    async def answer(self, prompt: str, *, metadata: dict[str, Any]) -> Answer:
        if metadata["index"] % 2:
            raise ModelError("server down")
        usage = Usage(prompt_tokens=60, completion_tokens=40, cost_usd=0.5, source="scripted")
        return Answer("So the answer is Yes.", usage=usage, latency_s=2.0, messages=3)

    async def aclose(self) -> None:
        return None


async def test_summary_means_are_over_the_examples_answered(tmp_path: Path) -> None:
    bench = tiny_bbh(tmp_path / "bbh")
    summary = await run_bbh(HalfFailing(), bench, out=tmp_path / "out", progress=False)
    task = summary.tasks["navigate"]
    assert (summary.n, summary.errors, task.correct, task.accuracy) == (4, 2, 2, 50.0)
    for s in (summary, task):
        assert (s.mean_latency_s, s.mean_tokens, s.mean_cost_usd) == (2.0, 100, 0.5)
        assert s.mean_messages == 3
    assert (summary.mean_prompt_tokens, summary.mean_completion_tokens) == (60, 40)
    assert (task.tokens, task.cost_usd, task.messages) == (200, 1.0, 6)


def test_network_system_with_a_model_override_is_real(tmp_path: Path) -> None:
    yaml = tmp_path / "sim.yaml"
    yaml.write_text(
        "name: simnet\n"
        'models:\n  small: {spec: "sim:7b"}\n'
        "agents:\n  - {name: solver, capabilities: [reason], model: small}\n"
    )
    assert NetworkSystem(yaml).source == "simulated"
    # Network points every sim model at the server's model when a model name is given
    assert NetworkSystem(yaml, model="llama3.2").source == "real"


@pytest.mark.parametrize("command", ["bbh", "compare"])
def test_cli_exits_non_zero_when_examples_failed(tmp_path: Path, command: str) -> None:
    tiny_bbh(tmp_path / "bbh")
    recordings = tmp_path / "other.json"
    recordings.write_text(json.dumps({"outputs": [{"input": "Q: x?\nA:", "prediction": "y"}]}))
    spec = f"replay:{recordings}"
    args = ["--model", spec] if command == "bbh" else [spec]
    result = CliRunner().invoke(
        bench_app,
        [command, *args, "--data", str(tmp_path / "bbh"), "--out", str(tmp_path / "out"), "-q"],
    )
    assert result.exit_code == 1, result.output
    assert "failed" in result.output and "retry" in " ".join(result.output.split())
