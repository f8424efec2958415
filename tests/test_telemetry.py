"""OpenTelemetry spans and metrics of real runs, read back with the SDK's in-memory readers.

Each test gives its manager providers of its own (``Telemetry(tracer_provider=…,
meter_provider=…)``), so nothing depends on the global set-once providers.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from ffmpeg_tasks import (
    CommandPolicy,
    FakeDownloader,
    FakeExecutor,
    MemoryStorage,
    TaskManager,
    TaskStatus,
    Telemetry,
    fake_media,
)

from .helpers import make_manager
from .servers import MediaServer
from .test_cancellation import SLOW, until_processing

QUICK = "-i in.mp4 -c:v libx264 -preset ultrafast -c:a copy out.mp4"


@attrs.define
class Otel:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    telemetry: Telemetry
    tracer_provider: TracerProvider

    def finished_spans(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        """The data points of metric ``name`` (cumulative), none if it was never recorded."""
        data = self.metrics.get_metrics_data()
        if data is None:
            return []
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        return list(metric.data.data_points)
        return []

    def values(self, name: str, key: str) -> dict[Any, Any]:
        """``{attributes[key]: value}`` of a counter's points."""
        return {p.attributes.get(key): p.value for p in self.points(name)}

    def total(self, name: str) -> Any:
        return sum(p.value for p in self.points(name))


@pytest.fixture
def otel() -> Iterator[Otel]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    assert telemetry.enabled
    yield Otel(spans, reader, telemetry, tracer_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def by_name(spans: Sequence[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def task_span(spans: Sequence[ReadableSpan], task_id: str) -> ReadableSpan:
    (found,) = [
        s for s in spans if s.name == "ffmpeg_tasks.task" and s.attributes is not None
        and s.attributes.get("ffmpeg_tasks.task_id") == task_id
    ]  # fmt: skip
    return found


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


async def test_completed_task_span_phases_and_metrics(
    tmp_path: Path,
    media_server: MediaServer,
    media_dir: Path,
    otel: Otel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with make_manager(tmp_path, telemetry=otel.telemetry) as tm:
        task = await tm.run(QUICK, {"in.mp4": media_server.media_url("clip.mp4")}, "out.mp4")
    assert task.status is TaskStatus.COMPLETED, task.error
    size_in = (media_dir / "clip.mp4").stat().st_size
    size_out = task.outputs[0].size

    spans = otel.finished_spans()
    root = task_span(spans, task.id)
    assert root.parent is None
    assert root.status.status_code is StatusCode.UNSET  # OK is the application's to set
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # e.g. a bad detach
    assert root.attributes is not None
    assert root.attributes["ffmpeg_tasks.status"] == "completed"
    assert root.attributes["ffmpeg_tasks.attempt"] == 1
    assert "ffmpeg_tasks.error_code" not in root.attributes
    phases = by_name(children(spans, root))
    assert sorted(phases) == [
        "ffmpeg_tasks.fetch", "ffmpeg_tasks.probe", "ffmpeg_tasks.run", "ffmpeg_tasks.store",
    ]  # fmt: skip
    (fetch,), (run,), (probe,), (store,) = (
        phases[f"ffmpeg_tasks.{n}"] for n in ("fetch", "run", "probe", "store")
    )
    assert fetch.attributes == {"ffmpeg_tasks.inputs": 1, "ffmpeg_tasks.bytes": size_in}
    assert run.attributes == {"ffmpeg_tasks.step": 0, "ffmpeg_tasks.exit_code": 0}
    assert probe.attributes is not None
    assert set(probe.attributes["ffmpeg_tasks.codecs"]) == {"h264", "aac"}  # type: ignore[arg-type]
    assert store.attributes == {"ffmpeg_tasks.objects": 1, "ffmpeg_tasks.bytes": size_out}
    for span in (fetch, run, probe, store):
        assert span.status.status_code is StatusCode.UNSET
        assert root.start_time is not None and span.start_time is not None
        assert root.end_time is not None and span.end_time is not None
        assert root.start_time <= span.start_time <= span.end_time <= root.end_time
    assert fetch.end_time <= run.start_time  # type: ignore[operator]
    assert run.end_time <= min(probe.start_time, store.start_time)  # type: ignore[operator,type-var]

    assert otel.values("ffmpeg_tasks.tasks.finished", "status") == {"completed": 1}
    assert otel.total("ffmpeg_tasks.fetched") == size_in
    assert otel.total("ffmpeg_tasks.stored") == size_out
    assert otel.total("ffmpeg_tasks.tasks.running") == 0
    durations = {p.attributes["phase"]: p for p in otel.points("ffmpeg_tasks.phase.duration")}
    assert sorted(durations) == ["fetch", "probe", "run", "store"]
    for point in durations.values():
        assert point.count == 1 and point.sum > 0 and point.attributes["outcome"] == "ok"
        assert 1.0 in point.explicit_bounds  # seconds, not the SDK's default buckets
    (whole,) = otel.points("ffmpeg_tasks.task.duration")
    assert whole.count == 1 and dict(whole.attributes) == {"status": "completed"}
    assert whole.sum >= max(p.sum for p in durations.values())


async def test_failed_task_error_code_and_status(
    tmp_path: Path, media_server: MediaServer, otel: Otel
) -> None:
    async with make_manager(
        tmp_path, telemetry=otel.telemetry, policy=CommandPolicy.trusted()
    ) as tm:
        task = await tm.run(
            "-i in.mp4 -c:v nosuchcodec out.mp4",
            {"in.mp4": media_server.media_url("clip.mp4")},
            "out.mp4",
        )
    assert task.status is TaskStatus.FAILED and task.error_code == "unknown_encoder"

    spans = otel.finished_spans()
    root = task_span(spans, task.id)
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "unknown_encoder"
    assert root.attributes is not None
    assert root.attributes["ffmpeg_tasks.status"] == "failed"
    assert root.attributes["ffmpeg_tasks.error_code"] == "unknown_encoder"
    phases = by_name(children(spans, root))
    assert sorted(phases) == ["ffmpeg_tasks.fetch", "ffmpeg_tasks.run"]
    (run,) = phases["ffmpeg_tasks.run"]
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes is not None
    assert run.attributes["error.type"] == "unknown_encoder"
    assert run.attributes["ffmpeg_tasks.exit_code"] != 0

    assert otel.values("ffmpeg_tasks.tasks.finished", "status") == {"failed": 1}
    assert otel.total("ffmpeg_tasks.stored") == 0
    outcomes = {
        p.attributes["phase"]: p.attributes["outcome"]
        for p in otel.points("ffmpeg_tasks.phase.duration")
    }
    assert outcomes == {"fetch": "ok", "run": "error"}
    (whole,) = otel.points("ffmpeg_tasks.task.duration")
    assert dict(whole.attributes) == {"status": "failed"}


async def test_cancelled_run_ends_its_spans_and_the_cancel_propagates(
    tmp_path: Path, media_server: MediaServer, otel: Otel
) -> None:
    async with make_manager(tmp_path, telemetry=otel.telemetry) as tm:
        task = await tm.register(SLOW, {"in.mp4": media_server.media_url("long.mp4")}, "out.mp4")
        owner = asyncio.create_task(tm.execute(task.id))
        await until_processing(tm, task.id)
        assert otel.total("ffmpeg_tasks.tasks.running") == 1
        owner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await owner
        assert (await tm.status(task.id)).status is TaskStatus.CANCELLED

    spans = otel.finished_spans()
    root = task_span(spans, task.id)
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes is not None
    assert root.attributes["ffmpeg_tasks.status"] == "cancelled"
    assert root.attributes["ffmpeg_tasks.error_code"] == "cancelled"
    (run,) = by_name(children(spans, root))["ffmpeg_tasks.run"]
    assert run.end_time is not None
    assert run.attributes is not None and run.attributes["error.type"] == "cancelled"
    assert otel.values("ffmpeg_tasks.tasks.finished", "status") == {"cancelled": 1}
    assert otel.total("ffmpeg_tasks.tasks.running") == 0


async def test_running_and_queued_counts_and_a_cancel_before_start(
    tmp_path: Path, media_server: MediaServer, otel: Otel
) -> None:
    async with make_manager(tmp_path, telemetry=otel.telemetry, max_concurrent_tasks=1) as tm:
        url = media_server.media_url("long.mp4")
        first = await tm.register(SLOW, {"in.mp4": url}, "out.mp4")
        second = await tm.register(SLOW, {"in.mp4": url}, "out.mp4")
        await tm.submit(first.id)
        await until_processing(tm, first.id)
        await tm.submit(second.id)
        for _ in range(2000):  # the second waits for the slot
            if otel.total("ffmpeg_tasks.tasks.queued") == 1:
                break
            await asyncio.sleep(0.01)
        assert otel.total("ffmpeg_tasks.tasks.queued") == 1
        assert otel.total("ffmpeg_tasks.tasks.running") == 1
        assert (await tm.cancel(second.id)).status is TaskStatus.CANCELLED
        assert (await tm.cancel(first.id)).status is TaskStatus.CANCELLED

    assert otel.total("ffmpeg_tasks.tasks.queued") == 0
    assert otel.total("ffmpeg_tasks.tasks.running") == 0
    assert otel.values("ffmpeg_tasks.tasks.finished", "status") == {"cancelled": 2}
    spans = otel.finished_spans()
    ran = [s.attributes for s in spans if s.name == "ffmpeg_tasks.task"]
    assert [a["ffmpeg_tasks.task_id"] for a in ran if a] == [first.id]  # the second never ran


async def test_a_chain_has_a_run_span_per_step_under_the_callers_span(
    tmp_path: Path, media_server: MediaServer, otel: Otel
) -> None:
    tracer = otel.tracer_provider.get_tracer("my-app")
    async with make_manager(tmp_path, telemetry=otel.telemetry) as tm:
        with tracer.start_as_current_span("request") as request:
            task = await tm.run(
                [
                    "-i in.mp4 -t 1 -vf scale=160:-2 -c:v libx264 -preset ultrafast -an small.mp4",
                    "-i small.mp4 -vf fps=5 anim.gif",
                ],
                {"in.mp4": media_server.media_url("clip.mp4")},
                output_files=["anim.gif", "small.mp4"],
            )
    assert task.status is TaskStatus.COMPLETED, task.error
    spans = otel.finished_spans()
    root = task_span(spans, task.id)
    assert root.parent is not None
    assert root.parent.span_id == request.get_span_context().span_id
    runs = sorted(
        (s for s in children(spans, root) if s.name == "ffmpeg_tasks.run"),
        key=lambda s: s.start_time or 0,
    )
    assert [dict(s.attributes or {}) for s in runs] == [
        {"ffmpeg_tasks.step": 0, "ffmpeg_tasks.exit_code": 0},
        {"ffmpeg_tasks.step": 1, "ffmpeg_tasks.exit_code": 0},
    ]
    (probe,) = by_name(children(spans, root))["ffmpeg_tasks.probe"]
    assert probe.attributes is not None
    assert set(probe.attributes["ffmpeg_tasks.codecs"]) == {"gif", "h264"}  # type: ignore[arg-type]
    (store,) = by_name(children(spans, root))["ffmpeg_tasks.store"]
    assert store.attributes is not None and store.attributes["ffmpeg_tasks.objects"] == 2
    assert otel.total("ffmpeg_tasks.stored") == sum(o.size for o in task.outputs)
    (run_steps,) = [
        p for p in otel.points("ffmpeg_tasks.phase.duration") if p.attributes["phase"] == "run"
    ]
    assert run_steps.count == 2


async def test_a_run_released_on_shutdown_is_not_counted_as_finished(
    tmp_path: Path, media_server: MediaServer, otel: Otel
) -> None:
    tm = make_manager(tmp_path, telemetry=otel.telemetry)
    async with tm:
        task = await tm.register(SLOW, {"in.mp4": media_server.media_url("long.mp4")}, "out.mp4")
        await tm.submit(task.id)
        await until_processing(tm, task.id)
        await tm.aclose(release=True)
        assert (await tm.status(task.id)).status is TaskStatus.PENDING

    root = task_span(otel.finished_spans(), task.id)
    assert root.status.status_code is StatusCode.UNSET
    assert root.attributes is not None
    assert root.attributes["ffmpeg_tasks.status"] == "released"
    assert "ffmpeg_tasks.error_code" not in root.attributes
    assert otel.points("ffmpeg_tasks.tasks.finished") == []
    assert otel.total("ffmpeg_tasks.tasks.running") == 0
    (whole,) = otel.points("ffmpeg_tasks.task.duration")
    assert dict(whole.attributes) == {"status": "released"}


# -- telemetry that cannot break a task -------------------------------------------------


def fake_manager(tmp_path: Path, **kwargs: Any) -> TaskManager:
    return TaskManager(
        downloader=FakeDownloader({"https://e.x/in.mp4": fake_media("in.mp4")}),
        executor=FakeExecutor(outputs={"out.mp4": fake_media("out.mp4")}),
        storage=MemoryStorage(),
        work_dir=tmp_path,
        **kwargs,
    )


class _Broken:
    """A tracer and meter provider, and everything they hand out, that raise on every call."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("create_", "get_")):
            return lambda *a, **k: _Broken()
        raise RuntimeError(f"broken telemetry: {name}")


async def test_instrumentation_errors_are_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Telemetry(tracer_provider=_Broken(), meter_provider=_Broken())  # type: ignore[arg-type]
    assert broken.enabled
    async with fake_manager(tmp_path, telemetry=broken) as tm:
        task = await tm.run(
            "-i in.mp4 -c copy out.mp4", {"in.mp4": "https://e.x/in.mp4"}, "out.mp4"
        )
    assert task.status is TaskStatus.COMPLETED, task.error
    messages = [r.getMessage() for r in caplog.records if r.name == "ffmpeg_tasks.telemetry"]
    assert any("starting span ffmpeg_tasks.task failed" in m for m in messages)
    assert any("recording a metric failed" in m for m in messages)


def test_the_package_works_without_opentelemetry(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.modules["opentelemetry"] = None  # as if not installed: importing it fails
        import ffmpeg_tasks
        from ffmpeg_tasks import Telemetry
        from ffmpeg_tasks.telemetry import default_telemetry
        from ffmpeg_tasks import FakeDownloader, FakeExecutor, MemoryStorage, TaskManager
        from ffmpeg_tasks import fake_media

        async def main():
            async with TaskManager(
                downloader=FakeDownloader({{"https://e.x/in.mp4": fake_media("in.mp4")}}),
                executor=FakeExecutor(outputs={{"out.mp4": fake_media("out.mp4")}}),
                storage=MemoryStorage(),
                work_dir={str(tmp_path)!r},
            ) as tm:
                assert tm.telemetry is default_telemetry() and not tm.telemetry.enabled
                task = await tm.run(
                    "-i in.mp4 -c copy out.mp4", {{"in.mp4": "https://e.x/in.mp4"}}, "out.mp4"
                )
            assert task.status.value == "completed", task.error
            assert not Telemetry().enabled
            assert not any(m == "opentelemetry" or m.startswith("opentelemetry.")
                           for m, v in sys.modules.items() if v is not None)
            print("ok")

        asyncio.run(main())
        """
    )
    root = Path(__file__).parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_global_providers_are_used_even_when_installed_after_the_manager(
    tmp_path: Path,
) -> None:
    """No code in the host beyond installing an SDK (in a subprocess: the globals are set once)."""
    script = textwrap.dedent(
        f"""
        import asyncio
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from ffmpeg_tasks import FakeDownloader, FakeExecutor, MemoryStorage, TaskManager
        from ffmpeg_tasks import fake_media

        async def main():
            tm = TaskManager(
                downloader=FakeDownloader({{"https://e.x/in.mp4": fake_media("in.mp4")}}),
                executor=FakeExecutor(outputs={{"out.mp4": fake_media("out.mp4")}}),
                storage=MemoryStorage(),
                work_dir={str(tmp_path)!r},
            )
            reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
            metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
            tracer_provider = TracerProvider()
            tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
            trace.set_tracer_provider(tracer_provider)
            async with tm:
                await tm.run(
                    "-i in.mp4 -c copy out.mp4", {{"in.mp4": "https://e.x/in.mp4"}}, "out.mp4"
                )
            print(sorted(s.name for s in spans.get_finished_spans()))
            data = reader.get_metrics_data()
            print(sorted(m.name for r in data.resource_metrics for s in r.scope_metrics
                         for m in s.metrics))

        asyncio.run(main())
        """
    )
    root = Path(__file__).parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    span_names, metric_names = done.stdout.splitlines()
    assert span_names == str(
        [f"ffmpeg_tasks.{n}" for n in ("fetch", "probe", "run", "store", "task")]
    )
    assert "'ffmpeg_tasks.tasks.finished'" in metric_names
    assert "'ffmpeg_tasks.phase.duration'" in metric_names
