"""The original HTTP service, rebuilt on ffmpeg_tasks: a drop-in FastAPI app.

    pip install 'ffmpeg-tasks[examples]'
    S3_BUCKET=my-bucket uvicorn examples.http_service:app      # or without S3_BUCKET: local storage

Endpoints (as before):
    POST /ffmpeg/register            {"command", "input_files", "output_filename"}
                                     -> {"task_id", "status"}
                                     ("argv": [...] instead of "command": one command as
                                     a list of arguments, e.g. ffmpeg-python's compile())
    POST /ffmpeg/execute/{task_id}   starts the task in the background -> {"task_id", "status"}
    GET  /ffmpeg/status/{task_id}    the task as JSON (status, output_url, error, error_code …)
    GET  /ffmpeg/health              ffmpeg, storage and store checks
Configuration comes from the environment (see docs/configuration.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ffmpeg_tasks import (
    FFmpegTasksError,
    InvalidSpecError,
    InvalidTaskStateError,
    TaskManager,
    TaskNotFoundError,
)


class RegisterRequest(BaseModel):
    command: str | None = Field(
        default=None, examples=["-i input.mp4 -c:v libx264 -crf 23 output.mp4"]
    )
    argv: list[str] | None = Field(
        default=None, examples=[["-i", "input.mp4", "-c:v", "libx264", "output.mp4"]]
    )
    input_files: dict[str, str] = Field(examples=[{"input.mp4": "https://example.com/video.mp4"}])
    output_filename: str = Field(examples=["output.mp4"])


def create_app(manager: TaskManager | None = None) -> FastAPI:
    """The app; pass a ``TaskManager`` (tests do) or let it read the environment."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with manager or TaskManager.from_env() as tm:
            app.state.tm = tm
            yield

    app = FastAPI(title="ffmpeg_tasks service", lifespan=lifespan)

    def tm(request: Request) -> TaskManager:
        return request.app.state.tm  # type: ignore[no-any-return]

    @app.exception_handler(FFmpegTasksError)
    async def typed_error(_request: Request, exc: FFmpegTasksError) -> JSONResponse:
        status = 500
        if isinstance(exc, TaskNotFoundError):
            status = 404
        elif isinstance(exc, InvalidSpecError):
            status = 400
        elif isinstance(exc, InvalidTaskStateError):
            status = 409
        return JSONResponse({"error": exc.code, "detail": exc.message}, status_code=status)

    @app.post("/ffmpeg/register")
    async def register(body: RegisterRequest, request: Request) -> dict[str, Any]:
        task = await tm(request).register(
            body.command, body.input_files, body.output_filename, argv=body.argv
        )
        return {"task_id": task.id, "status": task.status.value}

    @app.post("/ffmpeg/execute/{task_id}", status_code=202)
    async def execute(task_id: str, request: Request) -> dict[str, Any]:
        task = await tm(request).submit(task_id)
        return {"task_id": task.id, "status": task.status.value}

    @app.get("/ffmpeg/status/{task_id}")
    async def status(task_id: str, request: Request) -> dict[str, Any]:
        task = await tm(request).status(task_id)
        return {"task_id": task.id, **task.to_dict()}

    @app.get("/ffmpeg/health")
    async def health(request: Request) -> JSONResponse:
        report = await tm(request).health()
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    return app


app = create_app()
