#!/usr/bin/env python3
"""Init time (the cold start's share that is ours) of every function binary.

Each binary is started as Lambda starts it: AWS_LAMBDA_RUNTIME_API points at a stand-in
Runtime API here, and the init phase ends when the runtime asks for its first invocation
(GET /2018-06-01/runtime/invocation/next), as Lambda's own "Init Duration" counts it. A
binary that reports an init error (POST .../runtime/init/error) or exits fails the run.

Run twice per binary set: with plaintext connection URLs, and with the same values read
from a local Secrets Manager stand-in (moto's server) by ARN, which is what a deploy does.
Usage: init-times.py BINARY... (median of 5 starts each; times in milliseconds).
"""
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

RUNS = 5


class RuntimeApi(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.first_next = None
        self.init_error = None
        self.event = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.endswith("/runtime/invocation/next"):
            if self.server.first_next is None:
                self.server.first_next = time.monotonic()
            self.server.event.set()
            # Hold the request: the measurement ends here and the process is stopped.
            time.sleep(30)
        self.send_response(404)
        self.end_headers()

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        if self.path.endswith("/runtime/init/error"):
            self.server.init_error = body.decode(errors="replace")
            self.server.event.set()
        self.send_response(202)
        self.end_headers()
        self.wfile.write(b"{}")


def init_ms(binary, env):
    api = RuntimeApi()
    threading.Thread(target=api.serve_forever, daemon=True).start()
    name = os.path.basename(os.path.dirname(binary)) if os.path.basename(binary) == "bootstrap" else os.path.basename(binary)
    full_env = dict(env)
    full_env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "init-times",
    })
    started = time.monotonic()
    proc = subprocess.Popen([binary], env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not api.event.wait(20):
            raise SystemExit(f"{name}: no request to the Runtime API within 20 s")
        if api.init_error is not None:
            raise SystemExit(f"{name}: init failed: {api.init_error}")
        return (api.first_next - started) * 1000
    finally:
        proc.kill()
        proc.wait()
        api.shutdown()
        api.server_close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def moto_secrets(base_env):
    """Starts moto's server and stores the connection URLs as secrets; (process, env)."""
    port = free_port()
    proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    env = dict(base_env)
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint})
    for var, arn_var in [("AMQP_URL", "AMQP_SECRET_ARN"), ("DATABASE_URL", "DATABASE_SECRET_ARN"),
                         ("REDIS_URL", "REDIS_SECRET_ARN")]:
        body = json.dumps({"Name": f"init-times-{arn_var}-{port}", "SecretString": env.pop(var)}).encode()
        req = urllib.request.Request(endpoint + "/", data=body, method="POST", headers={
            "X-Amz-Target": "secretsmanager.CreateSecret",
            "Content-Type": "application/x-amz-json-1.1",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
        })
        env[arn_var] = json.load(urllib.request.urlopen(req))["ARN"]
    return proc, env


def main():
    binaries = sys.argv[1:]
    if not binaries:
        raise SystemExit(__doc__)
    base = dict(os.environ)
    base.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/orderflow")
    base.setdefault("REDIS_URL", "redis://127.0.0.1:6379")
    base.setdefault("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    base["ORDERFLOW_STAGE"] = base.get("ORDERFLOW_STAGE") or "local"
    moto, with_secrets = moto_secrets(base)
    try:
        print(f"{'function':<22} {'init ms':>9} {'with 3 secrets':>15}")
        for b in sorted(binaries, key=os.path.basename):
            plain = statistics.median(init_ms(b, base) for _ in range(RUNS))
            secret = statistics.median(init_ms(b, with_secrets) for _ in range(RUNS))
            name = os.path.basename(b)
            print(f"{name:<22} {plain:>9.1f} {secret:>15.1f}")
    finally:
        moto.kill()
        moto.wait()


if __name__ == "__main__":
    main()
