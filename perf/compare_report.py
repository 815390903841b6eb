#!/usr/bin/env python3
"""Report side of perf/compare.sh (standard library only).

  compare_report.py rdkafka-json TXT BROKER WORKLOAD ARGS   rdkafka_performance output -> JSON
                                                            in sluice bench's result shape
  compare_report.py report OUT_DIR SLUICE_BIN               OUT_DIR/results.md, results.json,
                                                            charts via `sluice bench plot`
  compare_report.py results-md OUT_DIR RESULTS_MD           perf/RESULTS.md from OUT_DIR
"""

import glob
import json
import os
import re
import subprocess
import sys

PEERS = ["tansu", "kafka"]
BROKER_NAMES = {
    "sluice": "Sluice (--cores 1, O_DIRECT + fdatasync)",
    "tansu": "Tansu 0.6.0 (memory://, not durable)",
    "kafka": "Kafka 0.9.0.1 (page cache, no fsync)",
}
SUMMARY = re.compile(
    r"(\d+) messages produced \((\d+) bytes\), (\d+) delivered \(offset (-?\d+), (\d+) failed\) "
    r"in (\d+)ms: (\d+) msgs/s and ([\d.]+) MB/s, (\d+) produce failures"
)


def rdkafka_json(txt, broker, workload, args):
    text = open(txt, errors="replace").read()
    matches = SUMMARY.findall(text)
    errors = []
    throughput = None
    if matches:
        produced, _, delivered, _, failed, ms, _, _, _ = matches[-1]
        seconds = int(ms) / 1000.0
        message_bytes = int(re.search(r"-s (\d+)", args).group(1))
        throughput = {
            "messages": int(delivered),
            "bytes": int(delivered) * message_bytes,
            "seconds": seconds,
            "messages_per_s": int(delivered) / seconds if seconds else 0.0,
            "mb_per_s": int(delivered) * message_bytes / seconds / 1e6 if seconds else 0.0,
        }
        if int(failed):
            errors.append(f"{failed} delivery failures")
    else:
        errors.append("no rdkafka_performance summary line")
    result = {
        "tool": "rdkafka_performance (librdkafka 2.12.1)",
        "ok": not errors,
        "mode": "produce",
        "label": broker,
        "workload": workload,
        "parameters": {"rdkafka_performance": args},
        "produce": {"throughput": throughput} if throughput else None,
        "errors": errors,
    }
    json.dump(result, sys.stdout, indent=1)
    print()


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ceilings(runs):
    out = {}
    tcp = load(f"{runs}/ceiling-loopback-tcp.json")
    if tcp and "sum_received" in tcp.get("end", {}):
        out["loopback_tcp_mb_per_s"] = tcp["end"]["sum_received"]["bits_per_second"] / 8 / 1e6
    for bs in ["1m", "16k"]:
        fio = load(f"{runs}/ceiling-odirect-fdatasync-{bs}.json")
        if not fio:
            continue
        job = fio["jobs"][0]
        entry = {"mb_per_s": job["write"]["bw_bytes"] / 1e6, "writes_per_s": job["write"]["iops"]}
        sync = job.get("sync", {}).get("lat_ns", {})
        pct = sync.get("percentile", {})
        if pct:
            entry["fdatasync_ms_p50"] = pct.get("50.000000", 0) / 1e6
            entry["fdatasync_ms_p99"] = pct.get("99.000000", 0) / 1e6
        elif sync.get("mean"):
            entry["fdatasync_ms_mean"] = sync["mean"] / 1e6
        out[f"odirect_fdatasync_{bs}"] = entry
    return out


def collect(out_dir):
    runs = f"{out_dir}/runs"
    params = load(f"{runs}/parameters.json") or {}
    rows = {}
    for path in sorted(glob.glob(f"{runs}/*.json")):
        name = os.path.basename(path)[:-5]
        if name.endswith(".cpu") or name.startswith("ceiling-") or name == "parameters":
            continue
        broker, workload = name.split("-", 1)
        if workload == "idle.cpu":
            continue
        result = load(path)
        if result is None:
            continue
        cpu = load(f"{runs}/{name}.cpu.json")
        produce = result.get("produce") or {}
        tp = produce.get("throughput") or {}
        row = {
            "broker": broker,
            "workload": workload,
            "client": "rdkafka_performance" if workload.startswith("rk-") else "sluice bench",
            "ok": result.get("ok"),
            "messages": tp.get("messages", 0),
            "msgs_per_s": tp.get("messages_per_s", 0.0),
            "mb_per_s": tp.get("mb_per_s", 0.0),
            "ack_ms": latency_ms(produce.get("ack_latency_us")),
            "e2e_ms": latency_ms((result.get("consume") or {}).get("e2e_latency_us")),
            "verification": result.get("verification"),
            "errors": result.get("errors") or [],
        }
        if cpu and row["messages"]:
            row["cpu_us_per_msg"] = cpu["cpu_ticks"] / cpu["clk_tck"] * 1e6 / row["messages"]
        rows[(workload, broker)] = row
    idle = {}
    for path in glob.glob(f"{runs}/*-idle.cpu.json"):
        data = load(path)
        if data:
            idle[data["broker"]] = data["idle_cpu_ticks"] / data["clk_tck"] / data["seconds"]
    return params, rows, idle, ceilings(runs)


def latency_ms(hist):
    if not hist or not hist.get("count"):
        return None
    return {k: hist[k] / 1000.0 for k in ["p50", "p99", "p99_9", "p99_99", "max"]}


def fmt(value, digits=1):
    if value is None:
        return "–"
    if isinstance(value, float) and value >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def ratio(a, b):
    if not a or not b:
        return None
    return a / b


def table(rows, ceil):
    workloads = []
    for workload, _ in rows:
        if workload not in workloads:
            workloads.append(workload)
    lines = [
        "| workload | client | broker | msgs/s | MB/s | ack p50 / p99 / p99.99 (ms) "
        "| e2e p50 / p99 / p99.99 (ms) | broker CPU µs/msg | Sluice/peer msgs/s "
        "| peer/Sluice CPU per msg |",
        "|---|---|---|---:|---:|---|---|---:|---:|---:|",
    ]
    for workload in workloads:
        sluice = rows.get((workload, "sluice"))
        for broker in ["sluice"] + PEERS:
            row = rows.get((workload, broker))
            if row is None:
                continue
            lat = lambda h: "–" if not h else f"{h['p50']:.3f} / {h['p99']:.3f} / {h['p99_99']:.3f}"
            speed = cpu = "–"
            if broker != "sluice" and sluice:
                r = ratio(sluice["msgs_per_s"], row["msgs_per_s"])
                speed = f"{r:.2f}x" if r else "–"
                r = ratio(row.get("cpu_us_per_msg"), sluice.get("cpu_us_per_msg"))
                cpu = f"{r:.2f}x" if r else "–"
            flag = "" if row["ok"] else " ⚠"
            lines.append(
                f"| {workload} | {row['client']} | {broker}{flag} | {fmt(row['msgs_per_s'])} "
                f"| {fmt(row['mb_per_s'])} | {lat(row['ack_ms'])} | {lat(row['e2e_ms'])} "
                f"| {fmt(row.get('cpu_us_per_msg'), 2)} | {speed} | {cpu} |"
            )
    return "\n".join(lines)


def ceiling_lines(ceil, rows):
    lines = ["| ceiling | MB/s | notes |", "|---|---:|---|"]
    tcp = ceil.get("loopback_tcp_mb_per_s")
    lines.append(f"| loopback TCP (iperf3, 1 stream, CPU 0 ↔ CPU 1) | {fmt(tcp)} | |")
    for bs in ["1m", "16k"]:
        entry = ceil.get(f"odirect_fdatasync_{bs}")
        if entry:
            note = f"{entry['writes_per_s']:,.0f} writes/s"
            if "fdatasync_ms_p99" in entry:
                note += f"; fdatasync p50 {entry['fdatasync_ms_p50']:.3f} ms, p99 {entry['fdatasync_ms_p99']:.3f} ms"
            lines.append(f"| O_DIRECT {bs} writes + fdatasync each (fio) | {fmt(entry['mb_per_s'])} | {note} |")
    odirect = (ceil.get("odirect_fdatasync_1m") or {}).get("mb_per_s")
    lines.append("")
    lines.append("Sluice as a fraction of the ceilings (MB/s of message values):")
    lines.append("")
    for workload in ["rk-16k-acksall-256kbatch", "p1-16k-acksall-256kbatch", "rk-1k-acksall-linger0", "p1-1k-acksall"]:
        row = rows.get((workload, "sluice"))
        if not row:
            continue
        parts = [f"- `{workload}`: {row['mb_per_s']:.1f} MB/s"]
        if tcp:
            parts.append(f"{row['mb_per_s'] / tcp:.0%} of loopback TCP")
        if odirect:
            parts.append(f"{row['mb_per_s'] / odirect:.0%} of O_DIRECT+fdatasync (1 MiB writes)")
        lines.append(", ".join(parts))
    return "\n".join(lines)


def verdict(ok):
    return "**met**" if ok else "**not met**"


def targets(rows, ceil):
    out = []
    get = lambda w, b: rows.get((w, b))
    s, t, k = (get("rk-1k-acksall-linger0", b) for b in ["sluice", "tansu", "kafka"])
    if s:
        for peer, name in [(t, "Tansu memory"), (k, "Kafka 0.9")]:
            if not peer:
                out.append(f"- Broker-bound 1 KiB vs {name}: no result")
                continue
            speed = ratio(s["msgs_per_s"], peer["msgs_per_s"]) or 0
            cpu = ratio(peer.get("cpu_us_per_msg"), s.get("cpu_us_per_msg")) or 0
            out.append(
                f"- Broker-bound 1 KiB, acks=all, batch.size=16384, linger.ms=0 vs {name}: "
                f"{speed:.2f}x msgs/s (target ≥2x: {verdict(speed >= 2)}), "
                f"{cpu:.2f}x less broker CPU/msg (target ≥5x: {verdict(cpu >= 5)})"
            )
    s, t = get("rk-100b-acksall-linger5", "sluice"), get("rk-100b-acksall-linger5", "tansu")
    if s and t:
        speed = ratio(s["msgs_per_s"], t["msgs_per_s"]) or 0
        cpu = ratio(t.get("cpu_us_per_msg"), s.get("cpu_us_per_msg")) or 0
        out.append(
            f"- Client-bound 100 B, linger.ms=5 vs Tansu memory: {speed:.2f}x msgs/s (target ≥1x: "
            f"{verdict(speed >= 0.995)}), {cpu:.2f}x less broker CPU/msg (target >1x: {verdict(cpu > 1)})"
        )
    tcp = ceil.get("loopback_tcp_mb_per_s")
    for workload in ["rk-16k-acksall-256kbatch", "p1-16k-acksall-256kbatch"]:
        s = get(workload, "sluice")
        if s and tcp:
            frac = s["mb_per_s"] / tcp
            out.append(
                f"- Large batches (`{workload}`): {s['mb_per_s']:.1f} MB/s = {frac:.0%} of loopback "
                f"TCP {tcp:.0f} MB/s (target ≥70%: {verdict(frac >= 0.7)})"
            )
    s = get("e2e-1k-acksall-half-rate", "sluice")
    if s and s["e2e_ms"]:
        e = s["e2e_ms"]
        out.append(
            f"- e2e at 50% of Sluice's max rate ({s['msgs_per_s']:,.0f} msgs/s achieved), CO-corrected: "
            f"p99 {e['p99']:.3f} ms (target <1 ms: {verdict(e['p99'] < 1)}), p99.99 {e['p99_99']:.3f} ms "
            f"(target <5 ms: {verdict(e['p99_99'] < 5)}), max {e['max']:.3f} ms"
        )
    return "\n".join(out)


def machine(params, idle):
    lines = [
        f"- Commit `{params.get('commit', '?')}`, run {params.get('date', '?')}",
        f"- Machine: {params.get('nproc')} CPUs ({params.get('cpu_model')}), kernel {params.get('kernel')}, "
        f"memlock {params.get('memlock')} KiB, load average at start {params.get('loadavg_start')}",
        f"- Each run {params.get('duration_s')} s after {params.get('warmup_s')} s warm-up; broker pinned "
        f"to CPU {params.get('broker_cpu')}, client to CPU {params.get('client_cpu')} (taskset)",
        f"- Clients: `sluice bench` (this commit) and rdkafka_performance, "
        f"{params.get('rdkafka_performance')}",
        f"- Peers: Tansu {params.get('tansu')}; Kafka {params.get('kafka')} on Java 17, 1 GiB heap, ZooKeeper "
        f"on the broker CPU",
    ]
    if idle:
        lines.append(
            "- Broker CPU while idle (2 s): "
            + ", ".join(f"{b} {v:.1%}" for b, v in sorted(idle.items()))
        )
    return "\n".join(lines)


def interference(out_dir):
    try:
        lines = open(f"{out_dir}/runs/machine-load.txt").read().split("\n")
    except OSError:
        return "no record"
    busy = []
    for line in lines:
        match = re.search(r"^\S+ (\S+) busy_before=([\d.]+)", line)
        if match:
            busy.append((float(match.group(2)), match.group(1)))
    if not busy:
        return "no record"
    worst = sorted(busy, reverse=True)[:3]
    return (f"Busy fraction just before the {len(busy)} runs: median {sorted(busy)[len(busy) // 2][0]:.0%}, "
            f"highest " + ", ".join(f"{b:.0%} ({name})" for b, name in worst) + ".")


def plot(out_dir, sluice_bin, rows):
    charts = f"{out_dir}/charts"
    workloads = sorted({w for w, _ in rows})
    for workload in workloads:
        files = [f"{out_dir}/runs/{b}-{workload}.json" for b in ["sluice"] + PEERS if (workload, b) in rows]
        subprocess.run(
            [sluice_bin, "bench", "plot", *files, "--out", f"{charts}/{workload}"],
            check=False, stdout=subprocess.DEVNULL,
        )


def report(out_dir, sluice_bin):
    params, rows, idle, ceil = collect(out_dir)
    plot(out_dir, sluice_bin, rows)
    failed = [f"{r['broker']} {r['workload']}: {'; '.join(map(str, r['errors'])) or 'not ok'}"
              for r in rows.values() if not r["ok"]]
    body = [
        f"# Comparison {os.path.basename(out_dir)}",
        "",
        machine(params, idle),
        "",
        "## Ceilings",
        "",
        ceiling_lines(ceil, rows),
        "",
        "## Results",
        "",
        "Brokers: " + "; ".join(BROKER_NAMES.values()) + ". `rk-*` workloads use rdkafka_performance "
        "(one partition, `-p 0`, whole run incl. start-up); the others use `sluice bench` (after warm-up). "
        "Kafka 0.9 only runs `rk-*`: it predates ApiVersions and RecordBatch v2, which `sluice bench` "
        "needs. Broker CPU is utime+stime of the broker process (Kafka: the JVM, not ZooKeeper) over "
        "the measured window divided by messages acknowledged. ⚠ marks a run with errors.",
        "",
        table(rows, ceil),
        "",
        "## Against the targets",
        "",
        targets(rows, ceil),
        "",
        "## Interference",
        "",
        "The machine is shared. Before each run the script waits (up to QUIET_WAIT_S) until the CPUs "
        "are at most QUIET_BUSY_MAX busy over 1 s; `runs/machine-load.txt` has the busy fraction "
        "seen just before each run and `runs/machine-top.txt` the busiest processes every 5 s.",
        "",
        interference(out_dir),
        "",
        "## Runs with errors",
        "",
        "\n".join(f"- {line}" for line in failed) or "none",
        "",
        "Charts: `charts/<workload>/` (throughput.png, latency-*.png). Per-run output: `runs/`.",
        "",
    ]
    with open(f"{out_dir}/results.md", "w") as f:
        f.write("\n".join(body))
    summary = {"parameters": params, "ceilings": ceil, "idle_cpu": idle,
               "rows": [r for r in rows.values()]}
    with open(f"{out_dir}/results.json", "w") as f:
        json.dump(summary, f, indent=1, default=str)
    print(f"{out_dir}/results.md")


def results_md(out_dir, path):
    text = open(f"{out_dir}/results.md").read()
    rel = os.path.relpath(out_dir, os.path.dirname(path))
    head = [
        "# Sluice vs Tansu vs Kafka: latest comparison",
        "",
        f"Generated by `perf/compare.sh` (see perf/README.md, \"Comparison\"); full output, per-run "
        f"JSON and charts in [`{rel}/`]({rel}/). Regenerating overwrites this file.",
        "",
    ]
    body = text.split("\n", 1)[1]
    body = body.replace("`charts/", f"`{rel}/charts/").replace("`runs/`", f"`{rel}/runs/`")
    with open(path, "w") as f:
        f.write("\n".join(head) + body)


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "rdkafka-json" and len(sys.argv) == 6:
        rdkafka_json(*sys.argv[2:])
    elif command == "report" and len(sys.argv) == 4:
        report(*sys.argv[2:])
    elif command == "results-md" and len(sys.argv) == 4:
        results_md(*sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
