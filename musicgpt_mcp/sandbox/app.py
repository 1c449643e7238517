"""The sandbox's HTTP routes: MusicGPT's documented contract, served from loopback."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..catalog import DEFAULT_STEMS, PREPROCESSING_OPTIONS, STEMS
from ..musicgpt import contract
from ..urls import webhook_allowed
from .audio import stem_mp3, stem_wav
from .state import Fault, Job, ReceivedDownload, ReceivedFile, ReceivedSubmit, SandboxState, WebhookDelivery

log = logging.getLogger(__name__)

API_PREFIX = "/api/public"
FILES_PREFIX = "/files"
# [seen] The storage URL the live API glues in front of its string-encoded stem maps.
STORAGE_PREFIX = "https://lalals.s3.amazonaws.com/"
# [guess] MusicGPT's words for a bad key; its docs do not show them.
INVALID_KEY_MESSAGE = "Invalid API key"
# Uploads are hashed as they are read back from the spool file, in chunks this size.
_HASH_CHUNK = 1024 * 1024


# In the double's own status messages, which reach the model as MusicGPT's (status_message): whoever reads
# them, whichever way the server was pointed here (--sandbox, or `musicgpt-mcp sandbox`), sees the price is invented.
MADE_UP = "sandbox: made-up credits, nothing is charged"


def credit_estimate(stems: int, preprocessing: int) -> float:
    """The sandbox's price: it only has to depend on the request, like the real one."""
    return 0.5 * stems + 0.25 * preprocessing


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(contract.error_reply(message), status_code=status)


def _reset(request: Request) -> Response:
    """Abort the client's TCP connection with an RST, as a crashing proxy or a flaky network would."""
    import socket
    import struct

    # The ASGI spec has no way to reset a connection; uvicorn's receive callable is bound to the
    # request cycle, which holds the transport. Test infrastructure only.
    transport = getattr(getattr(request.receive, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("this ASGI server does not expose its transport; cannot reset")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    return Response(b"", status_code=500)


def _drip(fault: Fault, data: bytes, media: str) -> Response:
    async def pieces() -> AsyncIterator[bytes]:
        step = max(1, fault.size)
        for start in range(0, len(data), step):
            if start:
                await anyio.sleep(fault.delay)
            yield data[start : start + step]

    headers = {**dict(fault.headers), "Content-Length": str(len(data))}
    return StreamingResponse(pieces(), status_code=fault.status, media_type=media, headers=headers)


async def _fault_response(fault: Fault, request: Request | None = None) -> Response:
    if fault.action == "drip":
        return _drip(fault, fault.body, fault.content_type)
    if fault.delay:
        await anyio.sleep(fault.delay)
    if fault.action == "reset" and request is not None:
        return _reset(request)
    return Response(fault.body, status_code=fault.status, media_type=fault.content_type, headers=dict(fault.headers))


def _parse_list(raw: str | None, field: str, allowed: tuple[str, ...]) -> list[str] | JSONResponse:
    if raw is None or raw.strip() == "":
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return _error(422, f'{field} must be a JSON list, e.g. ["{allowed[0]}"].')
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return _error(422, f"{field} must be a JSON list of strings.")
    unknown = [item for item in value if item not in allowed]
    if unknown:
        return _error(422, f"Invalid {field}: {', '.join(unknown)}. Allowed: {', '.join(allowed)}.")
    return value


async def _hash_upload(upload: UploadFile) -> ReceivedFile:
    digest = hashlib.sha256()
    size = 0
    await upload.seek(0)
    while chunk := await upload.read(_HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return ReceivedFile(
        field="",
        filename=upload.filename,
        content_type=upload.content_type,
        size=size,
        sha256=digest.hexdigest(),
    )


def build_app(state: SandboxState) -> Starlette:
    async def submit(request: Request) -> Response:
        authorization = request.headers.get(contract.AUTH_HEADER)
        fault = state.take_fault("submit")
        if fault is not None and fault.action == "reset" and fault.size > 0:
            seen = 0
            async for chunk in request.stream():
                seen += len(chunk)
                if seen >= fault.size:
                    break
            state.record(ReceivedSubmit(authorization, request.headers.get("content-type", ""), {}, (), complete=False))
            return _reset(request)
        fields: dict[str, str] = {}
        files: list[ReceivedFile] = []
        try:
            # Starlette spools file parts to disk past 1 MB, so a large upload never sits in memory.
            async with request.form(max_files=4, max_fields=32, max_part_size=256 * 1024) as form:
                for name, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        received = await _hash_upload(value)
                        files.append(
                            ReceivedFile(name, received.filename, received.content_type, received.size, received.sha256)
                        )
                    else:
                        fields[name] = value
        except ClientDisconnect:
            # The client stopped sending before the body was complete (an upload it aborted): a POST
            # that arrived, but no job. Recorded, so tests can tell it from one never sent.
            state.record(ReceivedSubmit(authorization, request.headers.get("content-type", ""), {}, (), complete=False))
            return Response(b"", status_code=400)
        state.record(
            ReceivedSubmit(
                authorization=authorization,
                content_type=request.headers.get("content-type", ""),
                fields=fields,
                files=tuple(files),
            )
        )
        if fault is not None:
            return await _fault_response(fault, request)
        if not state.key_ok(authorization):
            return _error(401, INVALID_KEY_MESSAGE)

        stems = _parse_list(fields.get(contract.FIELD_STEMS), contract.FIELD_STEMS, STEMS)
        if isinstance(stems, Response):
            return stems
        options = _parse_list(
            fields.get(contract.FIELD_PREPROCESSING), contract.FIELD_PREPROCESSING, PREPROCESSING_OPTIONS
        )
        if isinstance(options, Response):
            return options
        audio_url = fields.get(contract.FIELD_AUDIO_URL, "").strip()
        audio = [f for f in files if f.field == contract.FIELD_AUDIO_FILE and f.size > 0]
        if audio_url and audio:
            return _error(422, contract.BOTH_INPUTS_MESSAGE)
        if not audio_url and not audio:
            return _error(422, contract.MISSING_INPUT_MESSAGE)

        requested = tuple(stems) or DEFAULT_STEMS
        if state.submit_delay:
            await anyio.sleep(state.submit_delay)
        job = state.new_job(
            stems=requested,
            preprocessing_options=tuple(options),
            source=(audio[0].filename or "audio") if audio else audio_url,
            webhook_url=fields.get(contract.FIELD_WEBHOOK_URL) or None,
            credit_estimate=credit_estimate(len(requested), len(options)),
        )
        log.info("sandbox accepted task %s (%s)", job.task_id, ", ".join(requested))
        body: dict[str, Any] = {
            "success": True,
            "message": f"Message published to queue ({MADE_UP})",
            "task_id": job.task_id,
            "conversion_id": job.conversion_id,
            "eta": job.eta,
            "credit_estimate": job.credit_estimate,
        }
        origin = str(request.base_url).rstrip("/")
        task = BackgroundTask(_deliver_webhook, state, job, origin) if job.webhook_url else None
        return JSONResponse(body, background=task)

    async def status(request: Request) -> Response:
        state.count_status_call()
        fault = state.take_fault("status")
        if fault is not None:
            return await _fault_response(fault, request)
        if not state.key_ok(request.headers.get(contract.AUTH_HEADER)):
            return _error(401, INVALID_KEY_MESSAGE)
        query = request.query_params
        if query.get("conversionType") != contract.CONVERSION_TYPE:
            return _error(400, f"conversionType must be one of: {contract.CONVERSION_TYPE}, ...")
        task_id, conversion_id = query.get("task_id"), query.get("conversion_id")
        if bool(task_id) == bool(conversion_id):
            return _error(400, "Provide either task_id or conversion_id, not both.")
        job = state.jobs.get(task_id) if task_id else _by_conversion(state, conversion_id or "")
        if job is None:
            return _error(404, contract.NOT_FOUND_MESSAGE)
        origin = str(request.base_url).rstrip("/")
        return JSONResponse({"success": True, "conversion": _conversion(state, job, origin)})

    async def stem_file(request: Request) -> Response:
        state.record_download(ReceivedDownload(request.url.path, request.headers.get(contract.AUTH_HEADER)))
        job = state.jobs.get(request.path_params["task_id"])
        stem, _, ext = str(request.path_params["name"]).rpartition(".")
        if job is None or stem not in job.stems or ext not in ("mp3", "wav") or state.job_status(job) != "COMPLETED":
            return Response(b"<Error><Code>NoSuchKey</Code></Error>", status_code=404, media_type="application/xml")
        index = STEMS.index(stem)
        data = stem_wav(state.stem_seconds, index) if ext == "wav" else stem_mp3(state.stem_seconds, index)
        media = "audio/wav" if ext == "wav" else "audio/mpeg"
        fault = state.take_fault("download")
        if fault is not None:
            return await _download_fault(fault, data, media, request)
        return Response(data, media_type=media)

    return Starlette(
        routes=[
            Route(API_PREFIX + contract.EXTRACTION_PATH, submit, methods=["POST"]),
            Route(API_PREFIX + contract.STATUS_PATH, status, methods=["GET"]),
            Route(FILES_PREFIX + "/{task_id}/{name}", stem_file, methods=["GET"]),
        ]
    )


def _by_conversion(state: SandboxState, conversion_id: str) -> Job | None:
    return next((job for job in list(state.jobs.values()) if job.conversion_id == conversion_id), None)


def _stem_urls(job: Job, origin: str, ext: str) -> dict[str, str]:
    return {stem: f"{origin}{FILES_PREFIX}/{job.task_id}/{stem}.{ext}" for stem in job.stems}


def _conversion(state: SandboxState, job: Job, origin: str) -> dict[str, Any]:
    """The `conversion` object of GET /byId, with stem maps in the shape the state selects."""
    status = state.job_status(job)
    created = datetime.now(UTC) - timedelta(seconds=max(0.0, state.clock() - job.created))
    messages = {
        name: f"{text} ({MADE_UP})"
        for name, text in (
            ("IN_QUEUE", "Queued"),
            ("IN_PROGRESS", "Processing"),
            ("COMPLETED", "Conversion successful"),
        )
    }
    conversion: dict[str, Any] = {
        "task_id": job.task_id,
        "conversion_id": job.conversion_id,
        "conversion_type": contract.CONVERSION_TYPE,
        "status": status,
        "status_msg": job.fail_reason if status == "FAILED" else messages.get(status, status),
        "conversion_cost": f"{job.credit_estimate}" if state.cost_as_string else job.credit_estimate,
        "createdAt": created.isoformat().replace("+00:00", "Z"),
        "updatedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    mp3_key, wav_key = (
        ("conversion_path", "conversion_path_wav")
        if state.map_keys == "conversion_path"
        else ("audio_url", "audio_url_wav")
    )
    if status == "COMPLETED":
        mp3 = job.mp3_override if job.mp3_override is not None else _stem_urls(job, origin, "mp3")
        wav = job.wav_override if job.wav_override is not None else _stem_urls(job, origin, "wav")
        conversion[mp3_key] = contract.encode_stem_map(mp3, state.stem_shape, STORAGE_PREFIX)
        conversion[wav_key] = contract.encode_stem_map(wav, state.stem_shape, STORAGE_PREFIX)
    else:
        conversion[mp3_key] = None
        conversion[wav_key] = None
    return conversion


async def _deliver_webhook(state: SandboxState, job: Job, origin: str) -> None:
    """POST the completion payload to the job's webhook once it has finished, as MusicGPT does: `webhook_copies`
    times, the copies after the first without a status (MusicGPT has been seen sending such)."""
    import httpx2

    await anyio.sleep(state.seconds_to_completion(job) + 0.05)
    if state.jobs.get(job.task_id) is not job:
        return  # forgotten (SandboxState.reset): a test that left it running has ended, and another has begun
    url = job.webhook_url or ""
    payload = {"success": True, **_conversion(state, job, origin)}
    # Only the address's origin is logged: a webhook's path may hold its secret.
    where = _origin_of(url)
    if not any(webhook_allowed(url, prefix) for prefix in state.webhook_urls):
        # The same rule as the server's: only addresses the user configured.
        log.info("sandbox webhook to %s not sent: not under a configured webhook prefix", where)
        state.record_webhook(WebhookDelivery(url, payload, None, "not a configured webhook prefix"))
        return
    if not _is_loopback(url):
        # The sandbox is an offline double: it never reaches beyond this machine.
        log.info("sandbox webhook to %s not sent: the sandbox only calls loopback addresses", where)
        state.record_webhook(WebhookDelivery(url, payload, None, "not loopback"))
        return
    # Loopback only (checked above), so no certificates to check: a client that loads the CA bundle costs 40 ms
    # of CPU, and 120 jobs ending together queued their deliveries behind 5 s of it.
    async with httpx2.AsyncClient(timeout=10.0, verify=False) as client:
        for copy in range(state.webhook_copies):
            body = payload if copy == 0 else {k: v for k, v in payload.items() if k != "status"}
            fault = state.take_fault("webhook")
            if fault is not None:
                await anyio.sleep(fault.delay)
            try:
                response = await client.post(url, json=body)
                state.record_webhook(WebhookDelivery(url, body, response.status_code, None))
            except httpx2.HTTPError as exc:
                log.warning("sandbox webhook to %s failed: %s", where, type(exc).__name__)
                state.record_webhook(WebhookDelivery(url, body, None, type(exc).__name__))


def _origin_of(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _is_loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _download_fault(fault: Fault, data: bytes, media: str, request: Request) -> Response:
    if fault.action == "drip":
        return _drip(fault, data, media)
    if fault.action == "truncate":

        async def partial() -> AsyncIterator[bytes]:
            yield data[: fault.size]

        # Declaring the whole length and sending less makes the server drop the connection mid-body.
        return StreamingResponse(partial(), media_type=media, headers={"Content-Length": str(len(data))})
    if fault.action == "stream":

        async def zeros() -> AsyncIterator[bytes]:
            # The real file's start (so it looks like the audio it claims to be), then zeros.
            start = data[: min(len(data), fault.size)]
            yield start
            block = bytes(1024 * 1024)
            left = fault.size - len(start)
            while left > 0:
                yield block[: min(left, len(block))]
                left -= len(block)

        headers = {"Content-Length": str(fault.size)} if fault.declare_length else {}
        return StreamingResponse(zeros(), media_type=media, headers=headers)
    return await _fault_response(fault, request)
