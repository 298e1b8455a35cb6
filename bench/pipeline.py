"""Benchmark: the pipeline itself, from an input's batches through the processor to carbon.

A generator process writes batches through the same BatchSink and pipe channels an input uses;
the real processor process (with a pass-through processor function) and the real plaintext
Graphite output process carry them to a TCP sink that counts lines. No parsing is measured here:
see udp_load.py for the inputs. Reports samples/s, CPU seconds and peak RSS of the process tree.

    python bench/pipeline.py [--samples 5000000] [--no-processor] [--http] [--destinations N]
                             [--method consistent-hashing] [--paths]

--http attaches the status server as the daemon does by default: the output sends it status
snapshots and a sampled tap of its batches, and a real http process reads them.
`--destinations N` sends through graphite_destinations: N instances (a, b, ...) of the one sink,
placed by `--method`, which measures the cost of routing against the default single destination.
`--paths` sends finished Graphite paths (as the carbon input makes them: no name rule applies)
instead of (host, name) samples.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import LineSink, cpu_seconds, rss_mb  # noqa: E402
from bucky.config import make_config  # noqa: E402
from bucky.daemon.channels import Channel  # noqa: E402
from bucky.daemon.children import ChildSpec, child_main  # noqa: E402
from bucky.daemon.runner_loop import BATCH_SIZE, queue_bytes  # noqa: E402
from bucky.daemon.sink import BatchSink  # noqa: E402
from bucky.daemon.sockets import bind_tcp  # noqa: E402
from bucky.sample import GRAPHITE_PATH  # noqa: E402

ctx = multiprocessing.get_context("fork")


def passthrough(host, name, value, timestamp):  # noqa: ANN001, ANN201 - the Bucky 2 signature
    return host, name, value, timestamp


def generate(channel: Channel, total: int, cfg: object, paths: bool = False,
             distinct: int = 10000) -> None:
    writer = channel.writer(queue_bytes(cfg.max_sample_queue))
    sink = BatchSink([writer], batch_size=BATCH_SIZE)
    now = int(time.time())
    names = [f"bench.host{i % 100}.metric{i}" for i in range(distinct)]
    if paths:
        batch = [(GRAPHITE_PATH, f"servers.web{i % 50:02d}.{names[i]}", float(i), now)
                 for i in range(1000)]
    else:
        batch = [(f"web{i % 50:02d}.example.com", names[i], float(i), now) for i in range(1000)]
    sent = 0
    while sent < total:
        # Back-pressure instead of drops: this measures capacity, not an overloaded input.
        while writer.pending_bytes > 4 << 20:
            writer.flush(time.monotonic() + 0.01)
        sink.extend(batch)
        sent += len(batch)
    sink.drain(time.monotonic() + 60)


def start(spec: ChildSpec) -> multiprocessing.Process:
    parent_end, child_end = ctx.Pipe(duplex=False)
    spec.ctrl = child_end
    spec.parent_pid = os.getpid()
    proc = ctx.Process(target=child_main, args=(spec,))
    proc.start()
    msg = parent_end.recv()
    assert msg == ("ready",), msg
    return proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=5_000_000)
    ap.add_argument("--no-processor", action="store_true")
    ap.add_argument("--http", action="store_true", help="the output feeds a status server")
    ap.add_argument("--destinations", type=int, default=0)
    ap.add_argument("--method", default="consistent-hashing")
    ap.add_argument("--paths", action="store_true",
                    help="finished Graphite paths, as the carbon input sends them")
    args = ap.parse_args()
    sink = LineSink()
    cluster = [f"127.0.0.1:{sink.port}:{chr(ord('a') + i)}" for i in range(args.destinations)]
    cfg = make_config(graphite_port=sink.port, self_metrics_interval=0,
                      graphite_destinations=cluster, graphite_relay_method=args.method,
                      processor=None if args.no_processor else passthrough,
                      process_join_timeout=30)
    to_output = Channel("to-output")
    to_http = Channel("graphite->http") if args.http else None
    procs = [start(ChildSpec("output", "graphite", "graphite", cfg, in_channels=[to_output],
                             out_channels=[to_http] if to_http else []))]
    names = ["generator", "output"]
    if to_http is not None:
        procs.append(start(ChildSpec("http", "http", "http", cfg, in_channels=[to_http],
                                     streams=[("http", bind_tcp("127.0.0.1", 0, "http"))])))
        names.append("http")
    if args.no_processor:
        first = to_output
    else:
        first = Channel("to-processor")
        procs.append(start(ChildSpec("processor", "processor", "processor", cfg,
                                     in_channels=[first], out_channels=[to_output])))
        names.append("processor")
    t0 = time.monotonic()
    gen = ctx.Process(target=generate, args=(first, args.samples, cfg, args.paths))
    gen.start()
    pids = [gen.pid] + [p.pid for p in procs]
    peak = 0.0
    while sink.lines < args.samples and time.monotonic() - t0 < 300:
        time.sleep(0.2)
        peak = max(peak, rss_mb(pids, peak=False))
        if sink.last_at is not None and time.monotonic() - sink.last_at > 5:
            break  # nothing more is coming: report what arrived
    elapsed = (sink.last_at or time.monotonic()) - t0
    cpu = cpu_seconds(pids)
    per_process = ", ".join(f"{name} {cpu_seconds([pid]):.1f} s" for name, pid in
                            zip(names, pids, strict=False))
    sink_cpu = cpu_seconds([os.getpid()])
    hwm = rss_mb(pids, peak=True)
    gen.join(10)
    for p in procs:
        os.kill(p.pid, 15)
        p.join(30)
    where = (f"{args.destinations} destinations, {args.method}" if args.destinations
             else "graphite_port")
    print(f"pipeline ({'no processor' if args.no_processor else 'with processor'}"
          f"{', graphite paths' if args.paths else ''}"
          f"{', status server' if args.http else ''}; {where}): "
          f"{sink.lines:,} of {args.samples:,} samples in {elapsed:.2f} s = "
          f"{sink.lines / elapsed:,.0f} samples/s; CPU {cpu:.1f} s ({per_process}; "
          f"the sink {sink_cpu:.1f} s); peak RSS {hwm:.0f} MB (sum of processes' peaks)")


if __name__ == "__main__":
    main()
