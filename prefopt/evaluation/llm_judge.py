"""A pairwise LLM judge at any OpenAI-compatible chat endpoint (`judge=llm`: OpenAI, a vLLM or llama.cpp server).

Each prompt is judged twice, the reference's answer first and then the policy's, so that a judge that favours a
position favours both models equally; the prompt's preference is the mean of the two verdicts. The judging prompt is
a template file (`judge.template`) with {{prompt}}, {{answer_a}} and {{answer_b}}; the reply's verdict is its last
[[A]], [[B]] or [[TIE]] (or a reply that is only A or B). A reply without one counts as a tie and is counted.

Requests go out `judge.concurrency` at a time, each with `judge.timeout_s`; a connection error, a timeout, HTTP 429
or 5xx is retried `judge.max_retries` times with a growing wait, then the judging stops with a JudgeUnavailable that
says what failed. The key is read from the environment variable `judge.api_key_env` when the request is made: it is
sent in the Authorization header and never written to a file, a log or a message. Standard library only (urllib).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from prefopt.errors import RecipeError

log = logging.getLogger(__name__)

PLACEHOLDERS = ("{{prompt}}", "{{answer_a}}", "{{answer_b}}")
_VERDICT = re.compile(r"\[\[\s*(A|B|TIE)\s*\]\]", re.IGNORECASE)
_BARE = re.compile(r"^\W*(A|B)\W*$", re.IGNORECASE)
RETRY_WAIT_S = 1.0  # before the first retry; doubled before each next one


class JudgeUnavailable(RecipeError):
    """The endpoint could not judge: unreachable, the key rejected, timeouts, no such model. Training's results are
    kept; the judging can be run again later."""


def template_path(value: str | Path) -> Path:
    """The template file `judge.template` names: as given (absolute, or relative to the current directory), else
    relative to the repository root (where conf/ is)."""
    path = Path(value).expanduser()
    if path.is_absolute() or path.is_file():
        return path
    from prefopt.config import CONF

    return CONF.parent / path


def read_template(value: str | Path) -> str:
    path = template_path(value)
    if not path.is_file():
        raise RecipeError(
            f"judge.template={value}: no such file ({path}); give a text file with {', '.join(PLACEHOLDERS)}."
        )
    text = path.read_text()
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:
        raise RecipeError(
            f"judge.template={value}: the template has no {', '.join(missing)} (it needs all of {', '.join(PLACEHOLDERS)})."
        )
    return text


def render_prompt(prompt) -> str:
    """A prompt as the judge reads it: plain text as it is, a conversation as `Role: text` turns."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)


def parse_verdict(reply: str) -> str | None:
    """ "A", "B" or "tie" from a judge's reply, None when it holds no verdict."""
    found = _VERDICT.findall(reply or "")
    if found:
        verdict = found[-1].upper()
        return "tie" if verdict == "TIE" else verdict
    bare = _BARE.match((reply or "").strip())
    return bare.group(1).upper() if bare else None


@dataclass
class Verdicts:
    """Each prompt's two verdicts as the policy sees them ("win", "loss", "tie" or None: no verdict): with the policy
    second (answer B) and with the policy first (answer A), and how many replies picked position A."""

    policy_second: list[str | None]
    policy_first: list[str | None]
    first_position_picked: int
    decided: int  # replies with an A or B verdict

    def preferences(self) -> list[float]:
        value = {"win": 1.0, "loss": 0.0, "tie": 0.5, None: 0.5}
        return [(value[a] + value[b]) / 2 for a, b in zip(self.policy_second, self.policy_first)]

    @property
    def unparsed(self) -> int:
        return sum(v is None for v in self.policy_second + self.policy_first)


class LLMJudge:
    """The `judge=llm` section made callable: `check()` before any answer is generated, `judge(...)` after."""

    def __init__(self, judge_cfg):
        self.base_url = str(judge_cfg.base_url).rstrip("/")
        self.model = str(judge_cfg.model)
        self.api_key_env = judge_cfg.get("api_key_env")
        self.template = read_template(judge_cfg.template)
        self.max_tokens = int(judge_cfg.max_tokens)
        self.temperature = float(judge_cfg.temperature)
        self.concurrency = int(judge_cfg.concurrency)
        self.max_retries = int(judge_cfg.max_retries)
        self.timeout_s = float(judge_cfg.timeout_s)

    # ------------------------------------------------------------------------------------------------ HTTP

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _request(self, path: str, body: dict | None = None) -> dict:
        """One call, retried on transient failures; JudgeUnavailable when it cannot succeed."""
        url = f"{self.base_url}{path}"
        data = json.dumps(body).encode() if body is not None else None
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(RETRY_WAIT_S * 2 ** (attempt - 1))
            request = urllib.request.Request(url, data=data, headers=self._headers(), method="POST" if data else "GET")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return json.loads(response.read().decode())
            except urllib.error.HTTPError as exc:
                if exc.code in (401, 403):
                    key = f"the key in ${self.api_key_env}" if self._headers().get("Authorization") else "no key"
                    raise JudgeUnavailable(
                        f"the judge at {self.base_url} rejected {key} (HTTP {exc.code}): set the environment variable "
                        f"{self.api_key_env or '<judge.api_key_env>'} to a key the endpoint accepts."
                    ) from None
                if exc.code == 429 or exc.code >= 500:
                    last = f"HTTP {exc.code}"
                    continue
                raise _RequestRejected(exc.code, _error_text(exc)) from None
            except TimeoutError:
                last = f"no answer within judge.timeout_s={self.timeout_s:g} s"
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, TimeoutError):
                    last = f"no answer within judge.timeout_s={self.timeout_s:g} s"
                else:
                    last = f"cannot connect ({exc.reason})"
            except (ConnectionError, ValueError) as exc:  # reset connections, a reply that is not JSON
                last = f"{type(exc).__name__}: {exc}"
        raise JudgeUnavailable(
            f"the judge at {url} gave no answer in {self.max_retries + 1} attempt{'s' if self.max_retries else ''} "
            f"(judge.max_retries={self.max_retries}): {last}."
        )

    def check(self) -> None:
        """Before any answer is generated: the endpoint answers, accepts the key and serves judge.model (where it lists
        its models at /models; an endpoint without that list is taken at its word)."""
        try:
            listing = self._request("/models")
        except _RequestRejected as exc:
            if exc.code in (404, 405):  # no model list here
                return
            raise JudgeUnavailable(f"the judge at {self.base_url}/models refused the request: {exc}") from None
        served = [m.get("id") for m in listing.get("data", []) if isinstance(m, dict)]
        if served and self.model not in served:
            raise JudgeUnavailable(
                f"judge.model={self.model} is not served at {self.base_url}; it serves {', '.join(map(str, served))}."
            )

    def _ask(self, prompt: str) -> str | None:
        """The verdict of one judging request: "A", "B", "tie", or None (no verdict in the reply, or the endpoint
        refused this one request, e.g. a prompt longer than its context)."""
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        try:
            reply = self._request("/chat/completions", body)
        except _RequestRejected as exc:
            if exc.code == 404:
                raise JudgeUnavailable(
                    f"{self.base_url}/chat/completions answered {exc}: check judge.base_url (up to /v1) and "
                    f"judge.model={self.model}."
                ) from None
            log.warning("the judge refused one request (%s): counted as a tie", exc)
            return None
        try:
            return parse_verdict(reply["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            return None

    # ------------------------------------------------------------------------------------------------ judging

    def judge(self, prompts: list, reference_answers: list[str], policy_answers: list[str]) -> Verdicts:
        """Both orders for every prompt, `concurrency` requests at a time; the first JudgeUnavailable stops the rest."""
        jobs = [(i, policy_first) for i in range(len(prompts)) for policy_first in (False, True)]
        stop = threading.Event()

        def run(job):
            i, policy_first = job
            if stop.is_set():
                return None
            a, b = (
                (policy_answers[i], reference_answers[i]) if policy_first else (reference_answers[i], policy_answers[i])
            )
            text = (
                self.template.replace("{{prompt}}", render_prompt(prompts[i]))
                .replace("{{answer_a}}", a)
                .replace("{{answer_b}}", b)
            )
            try:
                return self._ask(text)
            except JudgeUnavailable:
                stop.set()
                raise

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(run, job) for job in jobs]
            failures = [f.exception() for f in futures if f.exception() is not None]
        if failures:
            raise failures[0]
        verdicts = [f.result() for f in futures]
        as_policy = {"A": ("loss", "win"), "B": ("win", "loss"), "tie": ("tie", "tie"), None: (None, None)}
        second = [as_policy[v][0] for v in verdicts[0::2]]  # policy is answer B
        first = [as_policy[v][1] for v in verdicts[1::2]]  # policy is answer A
        return Verdicts(
            policy_second=second,
            policy_first=first,
            first_position_picked=sum(v == "A" for v in verdicts),
            decided=sum(v in ("A", "B") for v in verdicts),
        )


class _RequestRejected(Exception):
    """An HTTP 4xx other than an authentication failure or a rate limit: this request will not succeed as it is."""

    def __init__(self, code: int, text: str):
        super().__init__(f"HTTP {code}: {text}")
        self.code = code


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read().decode(errors="replace")[:300]
    except OSError:
        return exc.reason or ""
