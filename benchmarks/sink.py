"""A fast MusicGPT-compatible sink for benchmarks: it streams, so the figures measure us, not it.

Raw sockets and a thread per connection: uploads are drained into one reused 1 MiB buffer and
discarded; stem files are sent from one reused buffer. It answers just enough of the contract:

    POST .../v1/Extraction          drain the body, reply with a task
    GET  .../v1/byId?task_id=T      COMPLETED; T = "dl-<bytes>-<n>" maps stem "vocals" to a file of <bytes>
    GET  /files/<bytes>/<stem>.mp3  <bytes> of MP3 (a frame header, then zeros)

Run: python benchmarks/sink.py  (prints the port on stdout, serves until stdin closes)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import socketserver
import sys
import threading
from urllib.parse import parse_qs, urlsplit

BUFFER = 1024 * 1024
_ids = itertools.count()
_ZEROS = bytearray(BUFFER)
_ZEROS[:4] = b"\xff\xfb\x90\xc0"  # an MPEG audio frame header, so the file starts like an MP3


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        # A load generator closes its connections at the end of a run: not an error.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            self._serve()

    def _serve(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        scratch = bytearray(BUFFER)
        pending = b""
        while True:
            while b"\r\n\r\n" not in pending:
                n = sock.recv_into(scratch)
                if n == 0:
                    return
                pending += scratch[:n]
            head, _, pending = pending.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            if headers.get("expect", "").lower() == "100-continue":
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            remaining = int(headers.get("content-length", "0")) - len(pending)
            pending = b"" if remaining >= 0 else pending[remaining:]
            view = memoryview(scratch)
            while remaining > 0:
                n = sock.recv_into(view, min(BUFFER, remaining))
                if n == 0:
                    return
                remaining -= n
            self.respond(sock, method, target, headers)
            if headers.get("connection", "").lower() == "close":
                return

    def respond(self, sock: socket.socket, method: str, target: str, headers: dict[str, str]) -> None:
        url = urlsplit(target)
        if method == "POST" and url.path.endswith("/v1/Extraction"):
            task = f"bench-{next(_ids)}"
            self.json(
                sock,
                {
                    "success": True,
                    "message": "Message published to queue",
                    "task_id": task,
                    "conversion_id": f"c-{task}",
                    "eta": 0,
                    "credit_estimate": 1.0,
                },
            )
        elif method == "GET" and url.path.endswith("/v1/byId"):
            task = parse_qs(url.query).get("task_id", [""])[0]
            size = int(task.split("-")[1]) if task.startswith("dl-") else 1024
            host = headers.get("host", "127.0.0.1")
            stems = {"vocals": f"http://{host}/files/{size}/vocals.mp3"}
            self.json(
                sock,
                {
                    "success": True,
                    "conversion": {
                        "task_id": task,
                        "conversion_id": f"c-{task}",
                        "status": "COMPLETED",
                        "status_msg": "ok",
                        "conversion_cost": 1.0,
                        "conversion_path": json.dumps(stems),
                    },
                },
            )
        elif method == "GET" and url.path.startswith("/files/"):
            size = int(url.path.split("/")[2])
            sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nContent-Length: {size}\r\n\r\n".encode())
            view = memoryview(_ZEROS)
            while size > 0:
                chunk = min(size, BUFFER)
                sock.sendall(view[:chunk])
                size -= chunk
        else:
            self.json(sock, {"success": False, "error": "not found"}, status="404 Not Found")

    @staticmethod
    def json(sock: socket.socket, body: object, status: str = "200 OK") -> None:
        data = json.dumps(body).encode()
        sock.sendall(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
        )


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main() -> None:
    with Server(("127.0.0.1", 0), Handler) as server:
        print(server.server_address[1], flush=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        sys.stdin.read()  # serve until the parent closes our stdin
        server.shutdown()


if __name__ == "__main__":
    main()
