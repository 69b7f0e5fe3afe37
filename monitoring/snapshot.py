"""Draws the Grafana dashboard from a real run: starts `pubsubkafka dev`
(in-process broker, producer, consumer, query service, its own PostgreSQL
when none is usable), the lag exporter and a Prometheus scraping them under
the jobs the dashboard and the alerts select, sends a few minutes of traffic,
evaluates every panel's queries over the run and writes one SVG laid out as
the dashboard. Reports the queries that returned nothing; with --check,
exits 1 when one that should have returned data did not (QUIET lists those
that may not, and why).

    python3 monitoring/snapshot.py --binary target/debug/pubsubkafka --prometheus PATH [--check]

Run through monitoring/snapshot.sh, which finds both. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import snapshot_load
import snapshot_render

SCRAPE = 2.0  # seconds between scrapes
STEP = 2.0  # seconds between the graphs' points ($__interval)
DASHBOARD = Path(__file__).resolve().parent / "grafana" / "pubsubkafka.json"
# Queries (panel title, refId) that may return nothing on this run, and why;
# any other empty query is a finding (--check fails on it).
QUIET = {
    ("Active members of the consumer group", "A"):
        "the lag exporter publishes the members the broker describes; dev's in-process broker describes none",
    ("Database errors and look-ups in flight", "A"):
        "query_database_errors_total has a series per kind once one happened: none on a healthy run",
    ("Rows relayed and relay failures (per second)", "B"):
        "outbox_publish_failures_total has a series per kind once one happened: none on a healthy run",
    ("Outbox writes by outcome and shards found locked", "A"):
        "outbox_writes_total counts the producer's outbox, which dev runs only with PRODUCER_MODE=outbox",
}


class SnapshotError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, condition, deadline: float, process: subprocess.Popen | None = None, log: Path | None = None):
    """Polls `condition` until it returns a true value, the deadline passes
    or the process it depends on exits."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise SnapshotError(f"{what}: the process exited with status {process.returncode}\n{tail}")
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise SnapshotError(f"{what}: not within {deadline:.0f} s")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Stack(contextlib.ExitStack):
    """The processes of the run, stopped (Ctrl-C first) when it ends."""

    def __init__(self, work: Path):
        super().__init__()
        self.work = work

    def start(self, name: str, argv: list[str], env: dict | None = None) -> tuple[subprocess.Popen, Path]:
        log = self.work / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, start_new_session=True)
        self.callback(stop, process)
        return process, log


def stop(process: subprocess.Popen) -> None:
    """SIGINT (dev then stops its PostgreSQL and removes its data), then
    SIGKILL after 30 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_dev(stack: Stack, binary: str) -> dict:
    """`pubsubkafka dev` on free ports; the addresses from its banner."""
    addresses = {name: f"127.0.0.1:{free_port()}" for name in ("producer", "consumer", "query", "console")}
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    process, log = stack.start("dev", [binary, "dev", "--producer-addr", addresses["producer"],
                                       "--consumer-addr", addresses["consumer"],
                                       "--query-addr", addresses["query"],
                                       "--console-addr", addresses["console"]], env)
    banner = wait_for("pubsubkafka dev's banner",
                      lambda: re.search(r"Pipeline running: broker (\S+)", log.read_text(errors="replace")),
                      180, process, log)
    addresses["broker"] = banner.group(1)
    for name in ("producer", "consumer", "query"):
        wait_for(f"{name} ready", lambda n=name: http_ok(f"http://{addresses[n]}/readyz"), 60, process, log)
    return addresses


def start_lag_exporter(stack: Stack, binary: str, addresses: dict) -> None:
    addresses["lag-exporter"] = f"127.0.0.1:{free_port()}"
    process, log = stack.start("lag-exporter", [binary, "lag", "--serve", addresses["lag-exporter"],
                                                "--bootstrap-server", addresses["broker"],
                                                "--group", "order-consumer", "--interval", "2",
                                                "--window", "60", "--allow-new-group"])
    wait_for("lag exporter", lambda: http_ok(f"http://{addresses['lag-exporter']}/metrics"), 60, process, log)


def start_prometheus(stack: Stack, prometheus: str, addresses: dict) -> str:
    """Prometheus scraping each service under the dashboard's job names."""
    jobs = [{"job_name": f"pubsubkafka-{name}", "static_configs": [{"targets": [addresses[name]]}]}
            for name in ("producer", "consumer", "query", "lag-exporter")]
    config = {"global": {"scrape_interval": f"{SCRAPE:.0f}s", "evaluation_interval": f"{SCRAPE:.0f}s"},
              "scrape_configs": jobs}
    path = stack.work / "prometheus.yml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    address = f"127.0.0.1:{free_port()}"
    process, log = stack.start("prometheus", [prometheus, f"--config.file={path}",
                                              f"--storage.tsdb.path={stack.work / 'tsdb'}",
                                              f"--web.listen-address={address}", "--log.level=warn"])
    wait_for("prometheus", lambda: http_ok(f"http://{address}/-/ready"), 60, process, log)
    base = f"http://{address}"
    wait_for("every target scraped", lambda: targets_up(base, len(jobs)), 30, process, log)
    return base


def targets_up(base: str, wanted: int) -> bool:
    try:
        result = snapshot_render.prometheus_get(base, "/api/v1/query", {"query": "sum(up)"})
    except (urllib.error.URLError, OSError, RuntimeError):
        return False
    return bool(result) and float(result[0]["value"][1]) >= wanted


def report(panels: list, counts: dict) -> list[str]:
    """Prints what was sent and which queries returned nothing; returns
    those that should have returned data."""
    print("\ntraffic (answers by request and status):")
    for (what, status), n in sorted(counts.items()):
        print(f"  {what:13} {status:>3}  {n}")
    findings = []
    print("\npanels (and their queries that returned nothing):")
    for panel in panels:
        title = panel.spec["title"]
        if panel.spec["type"] == "row":
            continue
        state = "ok" if not panel.empty_targets else "partial" if panel.has_data else "NO DATA"
        print(f"  {state:8} {title} ({len(panel.series)} series)")
        for ref in panel.empty_targets:
            reason = QUIET.get((title, ref))
            print(f"             {ref}: no data" + (f", expected: {reason}" if reason else ", UNEXPECTED"))
            if not reason:
                findings.append(f"{title} {ref}")
    return findings


def run(args: argparse.Namespace) -> int:
    dashboard = json.loads(args.dashboard.read_text())
    with tempfile.TemporaryDirectory(prefix="pubsubkafka-snapshot-") as scratch, Stack(Path(scratch)) as stack:
        began = time.monotonic()
        addresses = start_dev(stack, args.binary)
        start_lag_exporter(stack, args.binary, addresses)
        base = start_prometheus(stack, args.prometheus, addresses)
        print(f"running: {json.dumps(addresses)}, prometheus {base}", flush=True)
        start = time.time()
        counts = snapshot_load.drive(addresses["producer"], addresses["query"], args.seconds)
        time.sleep(args.tail)  # the last changes consumed, measured and scraped
        end = time.time()
        panels = snapshot_render.evaluate(base, dashboard, start, end, STEP, SCRAPE)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(snapshot_render.render(panels, dashboard["title"], start, end))
        findings = report(panels, counts)
        print(f"\nwrote {args.out} ({time.monotonic() - began:.0f} s since start)")
    if findings and args.check:
        print(f"FAILED: {len(findings)} quer(ies) without data: {'; '.join(findings)}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True, help="the pubsubkafka binary")
    parser.add_argument("--prometheus", required=True, help="the prometheus server binary")
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.svg"))
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--seconds", type=float, default=150, help="how long the traffic runs")
    parser.add_argument("--tail", type=float, default=15, help="seconds after the traffic before measuring")
    parser.add_argument("--check", action="store_true", help="exit 1 when a query that should return data did not")
    args = parser.parse_args()
    try:
        return run(args)
    except SnapshotError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
