"""An OpenAI-compatible chat endpoint on 127.0.0.1 whose replies come from the tiny random model, for the LLM judge's
tests: the client, the parsing and the failures run against a real HTTP server and a real model.

The model's verdict is constrained to the two answers: the reply is [[A]] or [[B]], whichever of the tokens "A" and
"B" the model gives the higher logit after the judging prompt (its last `CONTEXT_CHARS` characters). With
`free_text=True` the reply is the model's own greedy continuation instead, which holds no verdict. Faults on request:
a key to require, a delay before each reply, HTTP 503 for the first `fail_first` chat requests.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

from prefopt.models import load_model, load_tokenizer
from tests.conftest import compose_config

CONTEXT_CHARS = 160


class TinyJudgeModel:
    """The tiny random model as a judge: `verdict(prompt)` is "A" or "B", `continuation(prompt)` free text."""

    def __init__(self):
        cfg = compose_config("model=tiny-random", "logger=none")
        self.tokenizer = load_tokenizer(cfg.model)
        self.model = load_model(cfg.model, "fp32", seed=7).eval()
        self.a, self.b = (self.tokenizer.convert_tokens_to_ids(t) for t in ("A", "B"))
        self.lock = threading.Lock()

    def _logits(self, ids: list[int]) -> torch.Tensor:
        with self.lock, torch.no_grad():
            return self.model(input_ids=torch.tensor([ids])).logits[0, -1]

    def verdict(self, prompt: str) -> str:
        logits = self._logits(self.tokenizer(prompt[-CONTEXT_CHARS:])["input_ids"])
        return "A" if logits[self.a] >= logits[self.b] else "B"

    def continuation(self, prompt: str, tokens: int = 12) -> str:
        ids = self.tokenizer(prompt[-CONTEXT_CHARS:])["input_ids"]
        for _ in range(tokens):
            ids.append(int(self._logits(ids).argmax()))
        return "The model says: " + self.tokenizer.decode(ids[-tokens:], skip_special_tokens=True)


class JudgeServer:
    """Serves /v1/models and /v1/chat/completions in a background thread; `base_url` once started (a context
    manager). `chat_requests` counts the chat requests that reached it, `keys` the Authorization headers seen,
    `max_in_flight` the most chat requests it was answering at once."""

    def __init__(
        self,
        judge_model: TinyJudgeModel,
        model_name: str = "tiny-judge",
        key: str | None = None,
        delay_s: float = 0.0,
        fail_first: int = 0,
        free_text: bool = False,
    ):
        self.judge_model, self.model_name, self.key = judge_model, model_name, key
        self.delay_s, self.fail_first, self.free_text = delay_s, fail_first, free_text
        self.chat_requests = 0
        self.in_flight = self.max_in_flight = 0
        self.keys: list[str | None] = []
        self.counter_lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> JudgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                header = self.headers.get("Authorization")
                server.keys.append(header)
                if server.key is not None and header != f"Bearer {server.key}":
                    self._send(401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}})
                    return False
                return True

            def do_GET(self):
                if self.path != "/v1/models":
                    return self._send(404, {"error": {"message": "not found"}})
                if self._authorized():
                    self._send(200, {"object": "list", "data": [{"id": server.model_name, "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                if not self._authorized():
                    return None
                with server.counter_lock:
                    server.chat_requests += 1
                    failing = server.chat_requests <= server.fail_first
                if failing:
                    return self._send(503, {"error": {"message": "overloaded"}})
                if body.get("model") != server.model_name:
                    return self._send(404, {"error": {"message": f"model {body.get('model')} does not exist"}})
                with server.counter_lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(server.delay_s)
                    prompt = body["messages"][-1]["content"]
                    if server.free_text:
                        text = server.judge_model.continuation(prompt)
                    else:
                        text = f"[[{server.judge_model.verdict(prompt)}]]"
                finally:
                    with server.counter_lock:
                        server.in_flight -= 1
                self._send(
                    200,
                    {
                        "object": "chat.completion",
                        "model": server.model_name,
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                    },
                )

        return Handler
