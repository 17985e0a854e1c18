"""A small OpenAI-compatible chat server on loopback, for driving the real Groq client.

It serves POST /openai/v1/chat/completions (the path the Groq client posts to) and answers
according to `mode`:

- good: a valid JSON draft built from the DATA block it finds in the prompt
- malformed: text that is not JSON
- ineligible: a valid draft that also names a reward that was not offered
- wrong_points: a valid draft quoting a points figure that is not in the data
- slow: waits `slow_seconds` (past the client's timeout) before answering
- error: HTTP 500

It counts requests and the most requests it held at once, and keeps every request body.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("good", "malformed", "ineligible", "wrong_points", "slow", "error")
PATH = "/openai/v1/chat/completions"
WRONG_POINTS = 987_654


def prompt_data(prompt: str) -> dict[str, Any]:
    """The JSON object that follows 'DATA:' in the prompt."""
    start = prompt.index("{", prompt.index("DATA:"))
    data, _ = json.JSONDecoder().raw_decode(prompt, start)
    return data


def good_draft(data: dict[str, Any]) -> dict[str, Any]:
    lines = [f"Hi {data['first_name'] or 'there'},", ""]
    if data["points_balance"] is not None:
        lines.append(f"You have {data['points_balance']:,} points.")
    lines += [
        f"{offer['name']} is yours for {offer['points_cost']} points." for offer in data["offers"]
    ]
    return {
        "subject": f"Rewards for your {data['campaign'].replace('_', ' ')}",
        "preheader": "Picked from your rewards.",
        "body": "\n".join(lines),
        "reward_ids": [offer["reward_id"] for offer in data["offers"]],
    }


class LlmServer:
    def __init__(self, mode: str = "good", *, slow_seconds: float = 2.0, delay: float = 0.0):
        self.mode = mode
        self.slow_seconds = slow_seconds
        self.delay = delay  # every answer takes this long, so overlapping calls show
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown (once per test) fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def last_prompt(self) -> str:
        return self.bodies[-1]["messages"][-1]["content"]

    def __enter__(self) -> LlmServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()  # releases slow handlers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        mode = self.mode
        if mode == "error":
            return 500, {"error": {"message": "upstream failure", "type": "internal_error"}}
        if mode == "slow":
            self._stopping.wait(self.slow_seconds)
        elif self.delay:
            time.sleep(self.delay)
        data = prompt_data(body["messages"][-1]["content"])
        draft = good_draft(data)
        if mode == "ineligible":
            draft["reward_ids"].append("NOT-OFFERED")
        elif mode == "wrong_points":
            draft["body"] += f"\nSpend {WRONG_POINTS:,} points on anything you like."
        content = (
            "Sure! Here is a lovely email for you." if mode == "malformed" else json.dumps(draft)
        )
        return 200, {
            "id": f"chatcmpl-{self.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }


def _handler(owner: LlmServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != PATH:
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with owner._lock:
                owner.requests += 1
                owner.in_flight += 1
                owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                owner.bodies.append(body)
                owner.headers.append(dict(self.headers))
            try:
                self._send(*owner._answer(body))
            finally:
                with owner._lock:
                    owner.in_flight -= 1

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (timeout) before the answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
