"""The floor for the HTTP figures: a one-tool MCPServer on the same SDK and the same transport (Streamable
HTTP, stateless, SSE) as `musicgpt-mcp --transport http`. Its one tool does the least a status call must:
one GET of MusicGPT's status endpoint (the benchmark's sink), returned as text.

Run: python benchmarks/floor_http.py PORT BASE_URL
"""

from __future__ import annotations

import sys

import httpx2
import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

PORT, BASE_URL = int(sys.argv[1]), sys.argv[2]
server = MCPServer("floor")
http = httpx2.AsyncClient()


@server.tool()
async def get_extraction(task_id: str) -> str:
    """The job's status, as MusicGPT gives it."""
    response = await http.get(
        BASE_URL + "/v1/byId",
        params={"conversionType": "EXTRACTION", "task_id": task_id},
        headers={"Authorization": "k"},
    )
    return response.text


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


server.custom_route("/healthz", methods=["GET"])(healthz)

if __name__ == "__main__":
    app = server.streamable_http_app(stateless_http=True, json_response=False)
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_config=None, access_log=False)
