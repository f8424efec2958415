"""Make 127.0.0.1 behave like a remote link: a rate cap per server and direction (``tc``).

Loopback moves a GiB in well under a second, so "the network" is never the limit in the
other benchmarks. Here each listed flow gets a Linux HTB class of its own on ``lo``, so a
download from the file server, an upload to S3 and a download from S3 each run at most at
``mbps``, independently, as on a full-duplex link to a remote origin and a remote S3.
Shaping costs no CPU in the measured processes. Needs ``tc`` (iproute2) and CAP_NET_ADMIN.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator, Sequence


def _tc(*args: str) -> None:
    subprocess.run(["tc", *args], check=True, capture_output=True)


@contextlib.contextmanager
def shaped_loopback(
    mbps: int, *, from_ports: Sequence[int] = (), to_ports: Sequence[int] = ()
) -> Iterator[None]:
    """Cap traffic sent from each of ``from_ports`` and to each of ``to_ports`` at ``mbps``.

    ``mbps`` is megabits per second (800 ≈ 100 MB/s); 0 shapes nothing.
    """
    if mbps <= 0:
        yield
        return
    if shutil.which("tc") is None:
        raise SystemExit("--link-mbps needs tc (Debian: apt-get install iproute2)")
    current = subprocess.run(["tc", "qdisc", "show", "dev", "lo"], capture_output=True, text=True)
    if "htb" in current.stdout:
        raise SystemExit("lo already has an HTB qdisc; remove it first: tc qdisc del dev lo root")
    try:
        _tc(
            "qdisc",
            "add",
            "dev",
            "lo",
            "root",
            "handle",
            "1:",
            "htb",
            "default",
            "99",
            "r2q",
            "1000",
        )
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"tc could not shape lo (needs CAP_NET_ADMIN): {exc.stderr!r}") from None
    try:
        _tc("class", "add", "dev", "lo", "parent", "1:", "classid", "1:99", "htb",
            "rate", "100gbit", "quantum", "200000")  # fmt: skip
        flows = [("sport", p) for p in from_ports] + [("dport", p) for p in to_ports]
        for n, (direction, port) in enumerate(flows, start=10):
            rate = ("rate", f"{mbps}mbit", "burst", "256k", "cburst", "256k", "quantum", "65536")
            _tc("class", "add", "dev", "lo", "parent", "1:", "classid", f"1:{n}", "htb", *rate)
            match = ("u32", "match", "ip", direction, str(port), "0xffff", "flowid", f"1:{n}")
            _tc("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", *match)
        yield
    finally:
        _tc("qdisc", "del", "dev", "lo", "root")
