"""What the OpenTelemetry instrumentation costs per task run.

``python -m benchmarks.telemetry``: the hooks of one run (a task span, four phase spans,
bytes, the finished counter) timed in a loop with telemetry off, with the API and no SDK
(the global no-op providers: what a host that installs nothing gets), and with the SDK
recording into in-memory readers; then whole runs through a TaskManager on the fakes
(no ffmpeg, no network), off vs. SDK.  Needs ``opentelemetry-sdk`` (the test extra).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ffmpeg_tasks import (
    Event,
    EventType,
    FakeDownloader,
    FakeExecutor,
    MemoryStorage,
    Task,
    TaskManager,
    Telemetry,
    fake_media,
)


def sdk_telemetry() -> Telemetry:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    return Telemetry(
        tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader])
    )


def hooks_of_one_run(telemetry: Telemetry, task: Task) -> None:
    with telemetry.task(task) as span:
        for phase in ("fetch", "run", "probe", "store"):
            with telemetry.phase(phase) as child:
                child.set("bytes", 1000)
        telemetry.fetched(1000)
        telemetry.stored(1000)
        span.end_as("completed")
    telemetry.on_event(Event(EventType.COMPLETED, task.id))


def per_run_us(telemetry: Telemetry, n: int = 5000) -> float:
    task = Task(id="bench", commands=("-i in.mp4 out.mp4",), input_files={}, output_files=())
    hooks_of_one_run(telemetry, task)  # warm up
    start = time.perf_counter()
    for _ in range(n):
        hooks_of_one_run(telemetry, task)
    return (time.perf_counter() - start) / n * 1e6


async def whole_runs_ms(telemetry: Telemetry, n: int = 300) -> float:
    with tempfile.TemporaryDirectory() as work:
        async with TaskManager(
            downloader=FakeDownloader({"https://e.x/in.mp4": fake_media("in.mp4")}),
            executor=FakeExecutor(outputs={"out.mp4": fake_media("out.mp4")}),
            storage=MemoryStorage(),
            work_dir=work,
            telemetry=telemetry,
        ) as tm:
            run: Any = tm.run
            await run("-i in.mp4 -c copy out.mp4", {"in.mp4": "https://e.x/in.mp4"}, "out.mp4")
            start = time.perf_counter()
            for _ in range(n):
                await run("-i in.mp4 -c copy out.mp4", {"in.mp4": "https://e.x/in.mp4"}, "out.mp4")
            return (time.perf_counter() - start) / n * 1e3


def main() -> None:
    print(f"hooks of one run, off:          {per_run_us(Telemetry(enabled=False)):8.1f} µs")
    print(f"hooks of one run, API, no SDK:  {per_run_us(Telemetry()):8.1f} µs")
    print(f"hooks of one run, SDK:          {per_run_us(sdk_telemetry()):8.1f} µs")
    off = asyncio.run(whole_runs_ms(Telemetry(enabled=False)))
    sdk = asyncio.run(whole_runs_ms(sdk_telemetry()))
    print(f"a whole run on the fakes, off:  {off:8.2f} ms")
    print(f"a whole run on the fakes, SDK:  {sdk:8.2f} ms")


if __name__ == "__main__":
    main()
