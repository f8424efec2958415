"""Hand-run benchmarks: ffmpeg alone vs. a shell pipeline vs. the original service vs. ffmpeg_tasks.

Entry point: ``python -m benchmarks.run [--quick] [--only W1,W3] --out docs/performance.md``.
Not collected by pytest (tests live in ``tests/``).
"""
