"""The sandbox's HTTP routes: MusicGPT's documented contract, served from loopback."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import contract
from ..catalog import DEFAULT_STEMS, PREPROCESSING_OPTIONS, STEMS
from .state import Fault, ReceivedFile, ReceivedSubmit, SandboxState

log = logging.getLogger(__name__)

API_PREFIX = "/api/public"
# [guess] MusicGPT's words for a bad key; its docs do not show them.
INVALID_KEY_MESSAGE = "Invalid API key"
# Uploads are hashed as they are read back from the spool file, in chunks this size.
_HASH_CHUNK = 1024 * 1024


def credit_estimate(stems: int, preprocessing: int) -> float:
    """The sandbox's price: it only has to depend on the request, like the real one."""
    return 0.5 * stems + 0.25 * preprocessing


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(contract.error_reply(message), status_code=status)


async def _fault_response(fault: Fault) -> Response:
    if fault.delay:
        await anyio.sleep(fault.delay)
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
        fields: dict[str, str] = {}
        files: list[ReceivedFile] = []
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
        state.record(
            ReceivedSubmit(
                authorization=authorization,
                content_type=request.headers.get("content-type", ""),
                fields=fields,
                files=tuple(files),
            )
        )
        fault = state.take_fault("submit")
        if fault is not None:
            return await _fault_response(fault)
        if authorization != state.api_key:
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
            "message": "Message published to queue",
            "task_id": job.task_id,
            "conversion_id": job.conversion_id,
            "eta": job.eta,
            "credit_estimate": job.credit_estimate,
        }
        return JSONResponse(body)

    return Starlette(routes=[Route(API_PREFIX + contract.EXTRACTION_PATH, submit, methods=["POST"])])
