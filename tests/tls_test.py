#!/usr/bin/python3
"""TLS on the router's public ports: with --tls-cert/--tls-key, gRPC and the
OpenAI HTTP API are served over TLS only. The certificates are made by the
test with the openssl command (a throwaway CA and a server certificate for
127.0.0.1); clients trust that CA and nothing else.
"""
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import (Cluster, grpc, inference_pb2, inference_pb2_grpc,  # noqa: E402
                          worker_pb2, worker_pb2_grpc)

MODEL = "tests/fixtures/qwen3_moe_chat"


def make_certificates(d):
    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=moeserve test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "san.ext")


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        make_certificates(cls.dir)
        cls.cluster = Cluster(MODEL, 1, "--http-port", "0",
                              "--tls-cert", os.path.join(cls.dir, "server.pem"),
                              "--tls-key", os.path.join(cls.dir, "server.key"))
        with open(os.path.join(cls.dir, "ca.pem"), "rb") as f:
            cls.ca = f.read()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_grpc_over_tls_and_not_in_clear(self):
        creds = grpc.ssl_channel_credentials(root_certificates=self.ca)
        with grpc.secure_channel(self.cluster.target, creds) as ch:
            stub = inference_pb2_grpc.InferenceStub(ch)
            tokens = []
            for chunk in stub.Generate(inference_pb2.GenerateRequest(text="Hi", max_tokens=3),
                                       timeout=30):
                tokens.extend(chunk.token_ids)
            self.assertEqual(len(tokens), 3)
        with grpc.insecure_channel(self.cluster.target) as ch:
            stub = inference_pb2_grpc.InferenceStub(ch)
            with self.assertRaises(grpc.RpcError) as e:
                list(stub.Generate(inference_pb2.GenerateRequest(text="Hi", max_tokens=3),
                                   timeout=10))
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        # A client that does not trust our CA refuses the server.
        with grpc.secure_channel(self.cluster.target, grpc.ssl_channel_credentials()) as ch:
            stub = inference_pb2_grpc.InferenceStub(ch)
            with self.assertRaises(grpc.RpcError):
                list(stub.Generate(inference_pb2.GenerateRequest(text="Hi", max_tokens=3),
                                   timeout=10))

    def test_the_cli_client_connects_with_tls_ca(self):
        bin_ = os.environ.get("MOESERVE_BIN", "tools/moeserve")
        p = subprocess.run([bin_, "generate", "--target", self.cluster.target, "--tls-ca",
                            os.path.join(self.dir, "ca.pem"), "--prompt", "Hi",
                            "--max-tokens", "3", "--format", "json"],
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(len(json.loads(p.stdout)["token_ids"]), 3)

    def test_https_and_not_http(self):
        host, port = self.cluster.http.rsplit(":", 1)
        ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "ca.pem"))
        conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
        conn.request("POST", "/v1/completions",
                     body=json.dumps({"model": "qwen3_moe_chat", "prompt": "Hi",
                                      "max_tokens": 3}),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.read())["usage"]["completion_tokens"], 3)
        conn.close()
        plain = http.client.HTTPConnection(host, int(port), timeout=10)
        with self.assertRaises((OSError, http.client.HTTPException)):
            plain.request("GET", "/health")
            plain.getresponse().read()
        plain.close()


class InternalMutualTlsTest(unittest.TestCase):
    def test_router_and_workers_talk_mutual_tls_and_refuse_others(self):
        d = tempfile.mkdtemp()
        try:
            make_certificates(d)
            files = {k: os.path.join(d, v) for k, v in
                     [("cert", "server.pem"), ("key", "server.key"), ("ca", "ca.pem")]}
            with Cluster(MODEL, 2, "--internal-tls-cert", files["cert"], "--internal-tls-key",
                         files["key"], "--internal-tls-ca", files["ca"]) as c:
                # Through the router (plaintext in front): every rank took part.
                tokens, _, _ = c.generate(text="Hi", max_tokens=4, ignore_eos=True)
                self.assertEqual(len(tokens), 4)
                worker = c.workers()[1]["listen"]
                read = lambda name: open(files[name], "rb").read()  # noqa: E731

                def status(creds):
                    with grpc.secure_channel(worker, creds) if creds else \
                            grpc.insecure_channel(worker) as ch:
                        return worker_pb2_grpc.WorkerStub(ch).GetStatus(
                            worker_pb2.GetStatusRequest(), timeout=5)
                # A peer with a certificate from the cluster's CA is served...
                st = status(grpc.ssl_channel_credentials(read("ca"), read("key"), read("cert")))
                self.assertEqual(st.rank, 1)
                self.assertGreater(st.steps, 0)  # it stepped with the group
                # ...one without a certificate, or in cleartext, is not.
                for creds in [grpc.ssl_channel_credentials(read("ca")), None]:
                    with self.assertRaises(grpc.RpcError) as e:
                        status(creds)
                    self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
                # Nor one whose certificate another CA signed.
                other = tempfile.mkdtemp()
                try:
                    make_certificates(other)
                    rogue = grpc.ssl_channel_credentials(
                        read("ca"), open(os.path.join(other, "server.key"), "rb").read(),
                        open(os.path.join(other, "server.pem"), "rb").read())
                    with self.assertRaises(grpc.RpcError):
                        status(rogue)
                finally:
                    shutil.rmtree(other, ignore_errors=True)
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    import junit_xml  # noqa: E402
    sys.exit(junit_xml.main(sys.modules[__name__]))
