"""Real servers on loopback for engine tests: `transformers serve` with the organism, and a TCP proxy
that injects faults (refused connections, 503s, streams cut halfway) in front of it."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OrganismServer:
    """`transformers serve <organism checkpoint>` on 127.0.0.1; can be killed and started again."""

    def __init__(self, model_path: str, port: int | None = None, log: Path | None = None) -> None:
        self.model_path = model_path
        self.port = port or free_port()
        self.log = log
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        command = shutil.which("transformers", path=str(Path(sys.executable).parent))
        args = [command or "transformers", "serve", self.model_path, "--host", "127.0.0.1"]
        args += ["--port", str(self.port), "--device", "cpu"]
        out = self.log.open("ab") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError("transformers serve did not come up")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


class FaultProxy:
    """Forwards 127.0.0.1:port to a server; of every four connections, one is refused at once, one
    gets an HTTP 503 and one is cut after its first response bytes (as by a dying server)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.connections = itertools.count()
        self.faults = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = next(self.connections) % 4
        if mode == 1:
            self.faults += 1
            writer.close()
            return
        if mode == 2:
            self.faults += 1
            await reader.read(65536)
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        cut_after = 400 if mode == 3 else None
        if cut_after:
            self.faults += 1

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, limit: int | None) -> None:
            sent = 0
            try:
                while data := await source.read(4096):
                    if limit is not None and sent + len(data) > limit:
                        sink.write(data[: limit - sent])
                        break
                    sink.write(data)
                    sent += len(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(
            pipe(reader, upstream_writer, None), pipe(upstream_reader, writer, cut_after), return_exceptions=True
        )


class StandInHub:
    """A stand-in for the Hugging Face Hub's upload API on 127.0.0.1 (reached through HF_ENDPOINT), so that
    `huggingface_hub`'s own create-repo, card check, pre-upload and commit calls run: every file is taken as a
    regular (base64) file, and the files of each commit land in `files[repo_id]`. Requests it does not know
    answer 404."""

    def __init__(self) -> None:
        import base64
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        hub = self
        self.files: dict[str, dict[str, bytes]] = {}
        self.requests: list[str] = []
        self.validated: list[str] = []  # the cards the client asked the Hub to check before its commit

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(f"POST {self.path}")
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts == ["api", "validate-yaml"]:
                    hub.validated.append(json.loads(body)["content"])
                    return self._reply(200, {})
                if parts == ["api", "repos", "create"]:
                    request = json.loads(body)
                    repo = f"{request['organization']}/{request['name']}"
                    hub.files.setdefault(repo, {})
                    return self._reply(200, {"url": f"{hub.url}/datasets/{repo}"})
                if len(parts) == 6 and parts[:2] == ["api", "datasets"] and parts[4] == "preupload":
                    paths = [file["path"] for file in json.loads(body)["files"]]
                    files = [{"path": path, "uploadMode": "regular", "shouldIgnore": False} for path in paths]
                    return self._reply(200, {"files": files})
                if len(parts) == 6 and parts[:2] == ["api", "datasets"] and parts[4] == "commit":
                    repo = f"{parts[2]}/{parts[3]}"
                    for line in body.decode().splitlines():
                        entry = json.loads(line)
                        if entry["key"] == "file":
                            value = entry["value"]
                            hub.files[repo][value["path"]] = base64.b64decode(value["content"])
                    return self._reply(200, {"commitUrl": f"{hub.url}/datasets/{repo}/commit/1", "commitOid": "1" * 40})
                return self._reply(404, {"error": f"not served by the stand-in: {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandInHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
