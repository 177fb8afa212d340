#!/usr/bin/python3
"""The router's OpenAI-compatible HTTP API end to end: `moeserve local
--http-port 0` driven by Python's own http.client (an independent client),
checked against `moeserve run` and the gRPC API.
"""
import http.client
import json
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import Cluster, run_json  # noqa: E402

CHAT = "tests/fixtures/qwen3_moe_chat"
DEMO = "models/austen-moe"


def request(address, method, path, body=None, timeout=120):
    """(status, headers dict, body bytes)."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    out = r.status, dict(r.getheaders()), r.read()
    conn.close()
    return out


def sse_events(raw):
    """The JSON of each `data:` event, and whether [DONE] ended the stream."""
    events, done = [], False
    for block in raw.decode().split("\n\n"):
        if not block.startswith("data: "):
            continue
        payload = block[len("data: "):]
        if payload == "[DONE]":
            done = True
        else:
            events.append(json.loads(payload))
    return events, done


class HttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(CHAT, 2, "--http-port", "0")
        cls.http = cls.cluster.http
        assert cls.http, "no `moeserve http=` line:\n" + cls.cluster.log()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()

    def test_health_and_models(self):
        status, _, body = request(self.http, "GET", "/health")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["status"], "ok")
        status, _, body = request(self.http, "GET", "/v1/models")
        self.assertEqual(status, 200)
        models = json.loads(body)
        self.assertEqual(models["object"], "list")
        self.assertEqual([m["id"] for m in models["data"]], ["qwen3_moe_chat"])

    def test_completion_matches_run(self):
        ids = [5, 17, 33, 2, 9]
        want = run_json(CHAT, "--prompt-ids", ",".join(map(str, ids)), "--max-tokens", "12",
                        "--ignore-eos")
        status, _, body = request(self.http, "POST", "/v1/completions", {
            "model": "qwen3_moe_chat", "prompt": ids, "max_tokens": 12, "temperature": 0,
            "ignore_eos": True})
        self.assertEqual(status, 200, body)
        out = json.loads(body)
        self.assertEqual(out["object"], "text_completion")
        self.assertEqual(out["choices"][0]["text"], want["text"])
        self.assertEqual(out["choices"][0]["finish_reason"], "length")
        self.assertEqual(out["usage"], {"prompt_tokens": 5, "completion_tokens": 12,
                                        "total_tokens": 17})

    def test_chat_whole_and_streamed_agree_with_run(self):
        want = run_json(CHAT, "--prompt", "Tell me about the sea.", "--chat", "--max-tokens", "10",
                        "--temperature", "0.8", "--seed", "3", "--ignore-eos")
        body = {"model": "qwen3_moe_chat", "max_tokens": 10, "temperature": 0.8, "seed": 3,
                "ignore_eos": True,
                "messages": [{"role": "user", "content": "Tell me about the sea."}]}
        status, _, raw = request(self.http, "POST", "/v1/chat/completions", body)
        self.assertEqual(status, 200, raw)
        whole = json.loads(raw)
        self.assertEqual(whole["object"], "chat.completion")
        self.assertEqual(whole["choices"][0]["message"],
                         {"role": "assistant", "content": want["text"]})
        status, headers, raw = request(self.http, "POST", "/v1/chat/completions",
                                       dict(body, stream=True,
                                            stream_options={"include_usage": True}))
        self.assertEqual(status, 200, raw)
        self.assertTrue(headers["Content-Type"].startswith("text/event-stream"))
        events, done = sse_events(raw)
        self.assertTrue(done, raw)
        self.assertEqual(events[0]["choices"][0]["delta"]["role"], "assistant")
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
        self.assertEqual(text, want["text"])
        finishes = [e["choices"][0]["finish_reason"] for e in events if e["choices"]]
        self.assertEqual(finishes[-1], "length")
        self.assertTrue(all(f is None for f in finishes[:-1]))
        self.assertEqual(events[-1]["choices"], [])
        self.assertEqual(events[-1]["usage"]["completion_tokens"], 10)
        self.assertEqual(len({e["id"] for e in events}), 1)

    def test_errors_are_openai_error_objects(self):
        cases = [
            (b"{not json", "/v1/completions", 400, "not valid JSON"),
            ({"model": "gpt-4", "prompt": "x"}, "/v1/completions", 404, "gpt-4"),
            ({"model": "qwen3_moe_chat", "prompt": "x", "temperature": 9}, "/v1/completions",
             400, "'temperature'"),
            ({"model": "qwen3_moe_chat", "prompt": [1, 2], "max_tokens": 100000},
             "/v1/completions", 400, "100000"),
            ({"model": "qwen3_moe_chat", "messages": []}, "/v1/chat/completions", 400,
             "'messages'"),
        ]
        for body, path, want_status, needle in cases:
            status, _, raw = request(self.http, "POST", path, body)
            self.assertEqual(status, want_status, raw)
            err = json.loads(raw)["error"]
            self.assertIn(needle, err["message"])
            self.assertEqual(err["code"], want_status)
        status, _, raw = request(self.http, "GET", "/v1/nothing")
        self.assertEqual(status, 404)
        self.assertIn("error", json.loads(raw))
        # Still serving.
        status, _, _ = request(self.http, "POST", "/v1/completions",
                               {"model": "qwen3_moe_chat", "prompt": "Hi", "max_tokens": 2})
        self.assertEqual(status, 200)


class ApiKeyTest(unittest.TestCase):
    def test_keys_guard_grpc_and_http_but_not_health(self):
        os.environ["MOESERVE_API_KEY"] = "sk-test-123"
        try:
            c = Cluster(CHAT, 1, "--http-port", "0")
        finally:
            del os.environ["MOESERVE_API_KEY"]
        try:
            body = {"model": "qwen3_moe_chat", "prompt": "Hi", "max_tokens": 2}
            for headers in [{}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": "sk-test-123"}]:
                host, port = c.http.rsplit(":", 1)
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                conn.request("POST", "/v1/completions", body=json.dumps(body),
                             headers=dict(headers, **{"Content-Type": "application/json"}))
                r = conn.getresponse()
                err = json.loads(r.read())["error"]
                conn.close()
                self.assertEqual(r.status, 401, headers)
                self.assertEqual(err["type"], "AuthenticationError")
            host, port = c.http.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            conn.request("POST", "/v1/completions", body=json.dumps(body),
                         headers={"Content-Type": "application/json",
                                  "Authorization": "Bearer sk-test-123"})
            r = conn.getresponse()
            self.assertEqual(r.status, 200, r.read())
            conn.close()
            status, _, _ = request(c.http, "GET", "/v1/models")
            self.assertEqual(status, 401)
            status, _, _ = request(c.http, "GET", "/health")
            self.assertEqual(status, 200)
            import grpc
            from cluster_util import inference_pb2
            with self.assertRaises(grpc.RpcError) as e:
                c.generate(text="Hi", max_tokens=2)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
            tokens = []
            for chunk in c.stub.Generate(inference_pb2.GenerateRequest(text="Hi", max_tokens=2),
                                         metadata=[("authorization", "Bearer sk-test-123")],
                                         timeout=30):
                tokens.extend(chunk.token_ids)
            self.assertEqual(len(tokens), 2)
        finally:
            c.stop()


class HttpDisconnectTest(unittest.TestCase):
    def test_a_client_that_leaves_mid_stream_cancels_its_request(self):
        # The demo model at one thread per worker: 1000 tokens take seconds.
        with Cluster(DEMO, 2, "--http-port", "0") as c:
            host, port = c.http.rsplit(":", 1)
            sock = socket.create_connection((host, int(port)), timeout=30)
            body = json.dumps({"model": "austen-moe", "prompt": "It is a truth",
                               "max_tokens": 1000, "ignore_eos": True, "stream": True}).encode()
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nContent-Length: " +
                         str(len(body)).encode() + b"\r\n\r\n" + body)
            got = b""
            while b"data: " not in got:
                chunk = sock.recv(4096)
                self.assertTrue(chunk, "the server closed before the first event")
                got += chunk
            # The worker's block counts are updated at the end of a step,
            # after the step's tokens went out: wait until it shows the request.
            deadline = time.time() + 10
            while time.time() < deadline and \
                    sum(c.worker_status(r).kv_blocks_used for r in range(2)) == 0:
                time.sleep(0.005)
            sock.close()
            # Once the request is gone from its worker, it must have stopped
            # early (a request nobody cancelled runs all 1000 tokens).
            t0 = time.time()
            deadline = t0 + 30
            while time.time() < deadline:
                if all(c.worker_status(r).active_requests == 0 and
                       c.worker_status(r).kv_blocks_used == 0 for r in range(2)):
                    break
                time.sleep(0.02)
            print(f"request gone from its worker {time.time() - t0:.2f} s after the disconnect")
            for r in range(2):
                st = c.worker_status(r)
                self.assertEqual((st.active_requests, st.kv_blocks_used), (0, 0), f"rank {r}")
            generated = sum(c.worker_status(r).generated_tokens for r in range(2))
            self.assertLess(generated, 1000)


if __name__ == "__main__":
    import junit_xml  # noqa: E402
    sys.exit(junit_xml.main(sys.modules[__name__]))
