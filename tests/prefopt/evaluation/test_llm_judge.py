"""prefopt/evaluation/llm_judge.py against a real HTTP server on 127.0.0.1 answering with the tiny random model
(tests/prefopt/evaluation/judge_server.py): verdicts in both orders, the key, retries, timeouts, unparseable replies."""

import socket

import pytest
from omegaconf import OmegaConf

from prefopt.errors import RecipeError
from prefopt.evaluation import llm_judge
from prefopt.evaluation.llm_judge import JudgeUnavailable, LLMJudge, parse_verdict, read_template, render_prompt
from tests.prefopt.evaluation.judge_server import JudgeServer, TinyJudgeModel

PROMPTS = [
    [{"role": "user", "content": "What is the capital of Peru?"}],
    [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "2+2?"},
    ],
    "Write a haiku about rain.",
]
REFERENCE = ["Lima.", "4", "Rain falls soft and slow"]
POLICY = ["The capital of Peru is Lima.", "Four.", "Drops on the window, grey sky, the garden drinks"]
KEY = "sk-test-not-a-real-key-123"


@pytest.fixture(scope="module")
def judge_model():
    return TinyJudgeModel()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(llm_judge, "RETRY_WAIT_S", 0.01)


def judge_cfg(base_url, **overrides):
    values = {
        "name": "llm",
        "base_url": base_url,
        "model": "tiny-judge",
        "api_key_env": "TEST_JUDGE_KEY",
        "template": "conf/judge/pairwise.txt",
        "max_tokens": 16,
        "temperature": 0.0,
        "concurrency": 3,
        "max_retries": 2,
        "timeout_s": 10,
    }
    return OmegaConf.create({**values, **overrides})


def test_verdicts_are_parsed_from_the_last_marker_or_a_bare_letter():
    assert parse_verdict("A is wordy, B is right. [[B]]") == "B"
    assert parse_verdict("[[A]] at first, but on reflection [[ tie ]]") == "tie"
    assert parse_verdict(" a. ") == "A"
    assert parse_verdict("Assistant A is better") is None
    assert parse_verdict("") is None and parse_verdict(None) is None


def test_the_template_needs_its_three_placeholders(tmp_path):
    assert "{{answer_b}}" in read_template("conf/judge/pairwise.txt")
    (tmp_path / "mine.txt").write_text("Which is better, {{answer_a}} or {{answer_b}}?")
    with pytest.raises(RecipeError, match=r"has no \{\{prompt\}\}"):
        read_template(tmp_path / "mine.txt")
    with pytest.raises(RecipeError, match="no such file"):
        read_template(tmp_path / "missing.txt")


def test_each_prompt_is_judged_in_both_orders_as_the_model_decides(judge_model, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", KEY)
    with JudgeServer(judge_model, key=KEY) as server:
        client = LLMJudge(judge_cfg(server.base_url))
        client.check()
        verdicts = client.judge(PROMPTS, REFERENCE, POLICY)
    assert server.chat_requests == 2 * len(PROMPTS) and set(server.keys) == {f"Bearer {KEY}"}
    template = read_template("conf/judge/pairwise.txt")

    def expected(a, b, i):
        text = template.replace("{{prompt}}", render_prompt(PROMPTS[i])).replace("{{answer_a}}", a)
        return judge_model.verdict(text.replace("{{answer_b}}", b))

    for i in range(len(PROMPTS)):  # the verdicts the model gives, seen from the policy's side
        assert verdicts.policy_second[i] == {"A": "loss", "B": "win"}[expected(REFERENCE[i], POLICY[i], i)]
        assert verdicts.policy_first[i] == {"A": "win", "B": "loss"}[expected(POLICY[i], REFERENCE[i], i)]
    assert verdicts.unparsed == 0 and verdicts.decided == 2 * len(PROMPTS)
    value = {"win": 1.0, "loss": 0.0}
    assert verdicts.preferences() == [
        (value[a] + value[b]) / 2 for a, b in zip(verdicts.policy_second, verdicts.policy_first)
    ]


def test_a_reply_without_a_verdict_is_a_tie_and_counted(judge_model):
    with JudgeServer(judge_model, free_text=True) as server:
        verdicts = LLMJudge(judge_cfg(server.base_url)).judge(PROMPTS, REFERENCE, POLICY)
    assert verdicts.unparsed == 2 * len(PROMPTS) and verdicts.decided == 0
    assert verdicts.preferences() == [0.5] * len(PROMPTS)


def test_a_rejected_key_stops_at_once_naming_the_variable_never_the_key(judge_model, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-wrong-key-456")
    with JudgeServer(judge_model, key=KEY) as server:
        client = LLMJudge(judge_cfg(server.base_url))
        with pytest.raises(JudgeUnavailable, match=r"rejected the key in \$TEST_JUDGE_KEY \(HTTP 401\)") as exc:
            client.check()
        with pytest.raises(JudgeUnavailable, match="HTTP 401"):
            client.judge(PROMPTS, REFERENCE, POLICY)
    assert "sk-wrong-key-456" not in str(exc.value) and KEY not in str(exc.value)
    assert server.chat_requests == 0  # rejected before the model ran; not retried
    monkeypatch.delenv("TEST_JUDGE_KEY")
    with JudgeServer(judge_model, key=KEY) as server, pytest.raises(JudgeUnavailable, match="rejected no key"):
        LLMJudge(judge_cfg(server.base_url)).check()


def test_an_unreachable_endpoint_fails_after_its_retries():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = LLMJudge(judge_cfg(f"http://127.0.0.1:{port}/v1", max_retries=1))
    with pytest.raises(JudgeUnavailable, match=r"gave no answer in 2 attempts \(judge.max_retries=1\): cannot connect"):
        client.check()
    with pytest.raises(JudgeUnavailable, match="cannot connect"):
        client.judge(PROMPTS, REFERENCE, POLICY)


def test_a_slow_endpoint_times_out_and_transient_errors_are_retried(judge_model):
    with JudgeServer(judge_model, delay_s=1.0) as server:
        client = LLMJudge(judge_cfg(server.base_url, timeout_s=0.2, max_retries=1, concurrency=1))
        with pytest.raises(JudgeUnavailable, match=r"no answer within judge.timeout_s=0.2 s"):
            client.judge(PROMPTS[:1], REFERENCE[:1], POLICY[:1])
    assert 2 <= server.chat_requests <= 3  # the first request and its retry; the other order stopped after them
    with JudgeServer(judge_model, fail_first=2) as server:  # two HTTP 503s, then answers
        verdicts = LLMJudge(judge_cfg(server.base_url, concurrency=1)).judge(PROMPTS[:1], REFERENCE[:1], POLICY[:1])
    assert server.chat_requests == 4 and verdicts.unparsed == 0


def test_no_more_than_judge_concurrency_requests_are_in_flight(judge_model):
    with JudgeServer(judge_model, delay_s=0.15) as server:
        verdicts = LLMJudge(judge_cfg(server.base_url, concurrency=2)).judge(PROMPTS, REFERENCE, POLICY)
    assert server.chat_requests == 6 and server.max_in_flight == 2 and verdicts.unparsed == 0


def test_a_model_the_endpoint_does_not_serve_is_named_before_judging(judge_model):
    with JudgeServer(judge_model) as server:
        with pytest.raises(JudgeUnavailable, match="judge.model=gpt-judge is not served at .*; it serves tiny-judge"):
            LLMJudge(judge_cfg(server.base_url, model="gpt-judge")).check()
    assert server.chat_requests == 0
