"""The HTTP service under abuse (issue 21): a real `modalrec serve` process, measured from outside.

Cases, in one run against one server (a PMMRec with text and image towers, trained for one epoch on the
synthetic data set unless --run names another run folder):

- idle: RSS of the server and the latency of `/recommend` on catalogue ids;
- heavy content: one `/recommend` carrying the largest accepted content (50 entries, each with an image
  at the pixel limit) while a reader keeps calling `/recommend` on catalogue ids: its longest wait beyond
  the idle latency (target: 100 ms);
- image bombs: 8 parallel uploads of a 36-megapixel PNG of a few KB (refused from the header);
- stalled bodies: N connections that send headers and never the body; `/health` must keep answering
  and every stalled connection must be dropped by the server within the body timeout (+5 s);
- write storm: 16 readers and 1 writer for --duration seconds: errors, and every added item served;
- memory: peak RSS of each phase (the kernel's high-water mark, reset before the phase; where that is
  refused, RSS sampled every 50 ms) and the largest of them against idle (measured after one small content
  request has warmed the towers up; the RSS before it and the high-water mark of start-up are reported
  too), and RSS a minute after the burst.

Prints a table and writes bench/results/serve_abuse.json.

    python bench/serve_abuse.py [--stalled 20000] [--duration 60] [--quick]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness.output import write_result
from harness.runs import run_cli

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "runs" / "bench" / "serve_abuse"


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (width, height), 0 if mode == "1" else (90, 120, 150)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


class Server:
    def __init__(self, run: Path, port: int, body_timeout: float):
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.port = port
        self.log = Path(tempfile.mkstemp(prefix="modalrec-serve-", suffix=".log")[1])
        with open(self.log, "w") as out:  # a file, never a pipe: a full pipe would stall the server
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "modalrec.cli",
                    "serve",
                    str(run),
                    "--port",
                    str(port),
                    "--quiet",
                    "--body-timeout",
                    str(body_timeout),
                    # never replay or journal added items: a second run of the bench would
                    # meet its first run's items (409s), and --run must not be written into
                    "--forget-added",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.3)
        raise SystemExit("the server did not start")

    def request(self, method: str, path: str, body=None, timeout: float = 120) -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def get(self, path: str) -> tuple[int, bytes]:
        return self.request("GET", path, timeout=10)

    def rss_mib(self, field: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def reset_peak(self) -> bool:
        """Reset the kernel's high-water mark of the server's RSS (Linux: "5" into clear_refs); False if refused."""
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        return self.log.read_text(errors="replace")


def recommend_latency(srv: Server, ids: list[str], n: int = 20) -> float:
    ts = []
    for i in range(n):
        t = time.perf_counter()
        status, _ = srv.request("POST", "/recommend", {"history": ids[i % len(ids) :][:3] or ids[:3], "k": 10})
        ts.append(time.perf_counter() - t)
        assert status == 200
    return sorted(ts)[len(ts) // 2]


def heavy_content(srv: Server, ids: list[str], idle: float) -> dict:
    """The largest accepted /recommend (50 entries, each an image at the 12-megapixel limit) with a reader beside it."""
    image = base64.b64encode(png(4000, 3000)).decode()
    body = {"history": [{"title": f"film {i}", "image_base64": image} for i in range(50)], "k": 10}
    waits, done = [], threading.Event()

    def reader():
        while not done.is_set():
            t = time.perf_counter()
            srv.request("POST", "/recommend", {"history": ids[:3], "k": 10})
            waits.append(time.perf_counter() - t)

    th = threading.Thread(target=reader)
    t0 = time.perf_counter()
    th.start()
    status, _ = srv.request("POST", "/recommend", body, timeout=600)
    heavy_s = time.perf_counter() - t0
    done.set()
    th.join()
    return {
        "status": status,
        "body_mib": round(len(json.dumps(body)) / 2**20, 2),
        "heavy_request_s": round(heavy_s, 2),
        "reader_calls": len(waits),
        "reader_longest_wait_beyond_idle_ms": round((max(waits) - idle) * 1000, 1),
    }


def bombs(srv: Server) -> dict:
    bomb = base64.b64encode(png(6000, 6000, "1")).decode()
    out = []

    def upload(i):
        out.append(
            srv.request("POST", "/items", {"items": [{"item_id": f"bomb-{i}", "title": "Bomb", "image_base64": bomb}]})[
                0
            ]
        )

    ths = [threading.Thread(target=upload, args=(i,)) for i in range(8)]
    [t.start() for t in ths]
    [t.join() for t in ths]
    return {"uploads": 8, "bomb_kib": round(len(bomb) * 3 / 4 / 1024, 1), "statuses": sorted(out)}


STALLER = """
import json, resource, socket, sys, time
port, n, wait = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = []
for _ in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /items HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\nContent-Length: 1000\\r\\n\\r\\n")
        socks.append(s)
    except OSError:
        break
print(json.dumps({"opened": len(socks)}), flush=True)
time.sleep(wait)
answered = {}
for s in socks:
    s.settimeout(0.05)
    try:
        data = s.recv(65536)
        key = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
    except (socket.timeout, BlockingIOError):
        key = "still open"
    except OSError:
        key = "reset"
    answered[key] = answered.get(key, 0) + 1
    s.close()
print(json.dumps({"answers": answered}), flush=True)
"""


def stalled(srv: Server, n: int, body_timeout: float) -> dict:
    """N stalled uploads held by another process (its own file descriptors), /health asked meanwhile from
    this one; then how the server had answered each stalled connection."""
    wait = body_timeout + 5
    helper = subprocess.Popen(
        [sys.executable, "-c", STALLER, str(srv.port), str(n), str(wait)], stdout=subprocess.PIPE, text=True
    )
    t0 = time.time()
    opened = json.loads(helper.stdout.readline())["opened"]
    health = []
    while time.time() - t0 < wait - 1:
        t = time.perf_counter()
        try:
            code = srv.get("/health")[0]
        except OSError as e:
            code = type(e).__name__
        health.append((code, round((time.perf_counter() - t) * 1000, 1)))
        time.sleep(1.0)
    answers = json.loads(helper.stdout.readline())["answers"]
    helper.wait(timeout=600)
    ok = [ms for code, ms in health if code == 200]
    return {
        "opened": opened,
        "open_s": round(time.time() - t0, 1),
        "health_checks": len(health),
        "health_ok": len(ok),
        "health_slowest_ms": max(ok) if ok else None,
        "health_failures": [c for c, _ in health if c != 200][:5],
        "answers": answers,
        "dropped_by_server": opened - answers.get("still open", 0),
    }


def storm(srv: Server, ids: list[str], seconds: float) -> dict:
    errors, added, stop = [], [], time.time() + seconds

    def reader():
        while time.time() < stop:
            try:
                status, _ = srv.request("POST", "/recommend", {"history": ids[:5], "k": 10})
                if status != 200:
                    errors.append(status)
            except OSError as e:
                errors.append(str(e))

    def writer():
        i = 0
        while time.time() < stop:
            iid = f"storm-{i}"
            status, _ = srv.request("POST", "/items", {"items": [{"item_id": iid, "title": f"Storm film {i}"}]})
            (added.append(iid) if status == 201 else errors.append(status))
            i += 1

    ths = [threading.Thread(target=reader) for _ in range(16)] + [threading.Thread(target=writer)]
    [t.start() for t in ths]
    [t.join() for t in ths]
    served = sum(srv.get(f"/items/{i}")[0] == 200 for i in added)
    return {
        "seconds": seconds,
        "errors": len(errors),
        "error_examples": errors[:5],
        "added": len(added),
        "added_and_served": served,
    }


class RssSampler(threading.Thread):
    """The largest VmRSS seen every 50 ms: a phase's peak where clear_refs cannot be written."""

    def __init__(self, srv: Server):
        super().__init__(daemon=True)
        self.srv, self.done, self.peak = srv, threading.Event(), srv.rss_mib()

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, self.srv.rss_mib())

    def stop(self) -> float:
        self.done.set()
        self.join()
        return max(self.peak, self.srv.rss_mib())


PEAK_METHODS = {"VmHWM": "VmHWM reset before each phase", "sampled": "VmRSS sampled every 50 ms (clear_refs refused)"}


def phase(srv: Server, fn, *args) -> tuple[dict, str]:
    """Run one phase; its result carries ``peak_rss_mib``, the server's largest RSS during it (never below
    ``rss_mib_at_start``: what earlier phases left). Also returns how the peak was measured (a key of
    PEAK_METHODS)."""
    start = {"rss_mib_at_start": round(srv.rss_mib(), 1)}
    if srv.reset_peak():
        out = fn(*args)
        return {**out, **start, "peak_rss_mib": round(srv.rss_mib("VmHWM"), 1)}, "VmHWM"
    sampler = RssSampler(srv)
    sampler.start()
    try:
        out = fn(*args)
    finally:
        peak = sampler.stop()
    return {**out, **start, "peak_rss_mib": round(peak, 1)}, "sampled"


PHASES = ("heavy_content", "bombs", "stalled", "storm")


def peak_table(res: dict) -> str:
    """Per phase: RSS at its start and its peak in MiB, the peak over idle."""
    idle = res["idle"]["rss_mib"]
    rows = [f"{'phase':<14} {'start MiB':>10} {'peak MiB':>9} {'/ idle':>7}"]
    for name in PHASES:
        start, peak = res[name]["rss_mib_at_start"], res[name]["peak_rss_mib"]
        rows.append(f"{name:<14} {start:>10.0f} {peak:>9.0f} {peak / idle:>7.2f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="a content model's run folder (default: a PMMRec trained here on synthetic data)")
    ap.add_argument("--stalled", type=int, default=20000, help="stalled connections (issue: 20,000)")
    ap.add_argument("--duration", type=float, default=60, help="write storm seconds (issue: 60)")
    ap.add_argument("--body-timeout", type=float, default=30)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--settle", type=float, default=60, help="seconds after the burst before RSS is read again")
    ap.add_argument("--work", default=str(WORK), help="where the default PMMRec run is trained")
    ap.add_argument("--quick", action="store_true", help="200 stalled connections, a 10 s storm, 10 s to settle")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_abuse.json"))
    args = ap.parse_args(argv)
    n_stalled, duration, settle = (200, 10, 10) if args.quick else (args.stalled, args.duration, args.settle)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process opens the stalled sockets
    run = Path(args.run) if args.run else Path(args.work) / "pmmrec-synthetic"
    if not args.run:
        run_cli(
            ["train", "--model", "pmmrec", "--dataset", "synthetic", "--out", str(run), "--quiet", "train.epochs=1"],
            run,
            Path(args.work) / "logs" / "pmmrec-synthetic.log",
        )
    srv = Server(run, args.port, args.body_timeout)
    try:
        ids = [r["item_id"] for r in json.loads(srv.get("/items/search?q=a&limit=50")[1])["items"]]
        cold_rss = srv.rss_mib()
        small = base64.b64encode(png(64, 64)).decode()  # warm-up: the towers' first run allocates for good
        srv.request("POST", "/recommend", {"history": [ids[0], {"title": "warm-up", "image_base64": small}], "k": 10})
        idle_rss, idle = srv.rss_mib(), recommend_latency(srv, ids)
        res = {
            "idle": {
                "rss_mib_before_warm_up": round(cold_rss, 1),
                "rss_mib": round(idle_rss, 1),
                "recommend_ms": round(idle * 1000, 1),
            }
        }
        res["idle"]["peak_rss_mib_start_up"] = round(srv.rss_mib("VmHWM"), 1)  # loading + warm-up
        runs = {
            "heavy_content": (heavy_content, srv, ids, idle),
            "bombs": (bombs, srv),
            "stalled": (stalled, srv, n_stalled, args.body_timeout),
            "storm": (storm, srv, ids, duration),
        }
        for name, (fn, *fn_args) in runs.items():
            res[name], method = phase(srv, fn, *fn_args)
        res["peak_method"] = PEAK_METHODS[method]
        res["peak_rss_mib"] = max([idle_rss] + [res[name]["peak_rss_mib"] for name in PHASES])
        time.sleep(settle)
        res["settle_s"] = settle
        res["rss_a_minute_after_mib"] = round(srv.rss_mib(), 1)
    finally:
        log = srv.stop()
    res["server_5xx_in_log"] = sum(" 500 " in ln or "Traceback" in ln for ln in log.splitlines())
    res["server_log_lines"] = len(log.splitlines())
    res["peak_over_idle"] = round(res["peak_rss_mib"] / idle_rss, 2)
    res["after_over_idle"] = round(res["rss_a_minute_after_mib"] / idle_rss, 2)
    print(json.dumps({k: v for k, v in res.items()}, indent=1))
    print("\n" + peak_table(res) + f"\n(peak RSS per phase: {res['peak_method']})")
    write_result(
        args.out,
        {
            **res,
            "quick": args.quick,
            "run": str(run),
            "stalled_asked": n_stalled,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
