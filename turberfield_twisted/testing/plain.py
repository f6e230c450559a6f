"""
A worker that does not use the runtime: the standard library's HTTP server
answering ``GET /health`` as ``{"status": "ok", "guid": G}``. It never says
it listens on the ready fd, so the daemon finds it ready by polling.

``python -P -m turberfield_twisted.testing.plain --guid G --port P``
"""

import argparse
import json
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


def main() -> None:
    """Serve ``/health`` on 127.0.0.1:PORT until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--guid", required=True)
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args()
    body = json.dumps({"status": "ok", "guid": args.guid}).encode()

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    HTTPServer(("127.0.0.1", args.port), Health).serve_forever()


if __name__ == "__main__":
    main()
