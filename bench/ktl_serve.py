"""`ktl serve` for the Python benchmarks: start it on a free port, wait until healthy, post JSON,
stop it (SIGTERM) on leaving the `with` block.

    with KtlServer(ktl, model, ["--dtype", "int8"]) as srv:
        r = srv.post("/v1/completions", {"prompt": "오늘", "max_tokens": 4})
"""
import json, os, re, signal, subprocess, time, urllib.request


class KtlServer:
    def __init__(self, ktl, model, extra_args=()):
        self.args = [ktl, "serve", "--host", "127.0.0.1", "--port", "0", "--model", model,
                     "--data-dir", f"/tmp/ktl-bench-{os.getpid()}", *extra_args]
        self.port = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        for line in self.proc.stdout:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health") as r:
                    if json.load(r)["status"] == "ok":
                        return self
            except Exception:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"{' '.join(self.args)} never became healthy")

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()

    def post(self, path, body):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.load(r)
