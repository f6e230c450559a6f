"""
A web-hook receiver built on the standard library's ``http.server``, as
many subscribers are: HTTP/1.0 answers and a connection closed after each
one. It prints the ``seq`` of every delivery it gets, one per line.

``python -P -m turberfield_twisted.testing.plain_receiver PORT``
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()
        sys.stdout.write(f"{json.loads(body)['seq']}\n")
        sys.stdout.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass


if __name__ == "__main__":
    server = HTTPServer(("127.0.0.1", int(sys.argv[1])), _Handler)
    sys.stdout.write("listening\n")
    sys.stdout.flush()
    server.serve_forever()
