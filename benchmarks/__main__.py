"""Run every benchmark script and write one report: ``python -m benchmarks all [--quick]``.

The seed system had ``benchmark:all``; this is ours. Each script of ``benchmarks/`` runs in
its own child process (``python benchmarks/<name>.py ... --json <file>``), one after another so
they do not share the two cores, each with a time limit. A script that fails or times out is
reported as such, with the end of its output, and the others still run. The report folder
(``--out``, default ``bench-report/``) then holds:

* ``report.md``  -- the environment (agentdb version, backend and SIMD path, CPU, Python), a
  summary table (script, arguments, status, seconds) and every script's printed tables;
* ``report.json`` -- the same runs with every number each script wrote to its ``--json``;
* ``recall_qps.png`` -- recall@10 against single-thread QPS for every ANN library that ran
  (``benchmarks/ann.py``), when matplotlib is installed (``pip install ".[bench]"``).

``--quick`` runs each script at a small size (5,000-10,000 vectors, short timings; about 4
minutes on 2 cores); without it the scripts use their full default sizes (hours). A line a
script prints about a part it skipped or that failed (``skipped``, ``failed``, ``NOTE``) is
listed under the summary, so an "ok" run that left something out says so.
``--only ann,kernels`` picks scripts; ``--list`` shows them with their arguments.

Example::

    python -m benchmarks all --quick --out /tmp/bench
    python -m benchmarks all --quick --only kernels,ann,graph
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_NOTE = re.compile(r"\b(skipped|failed|NOTE)\b", re.IGNORECASE)

#: script -> (quick arguments, full arguments); --json is added by the runner.
SCRIPTS: dict[str, tuple[list[str], list[str]]] = {
    "kernels": (["--n", "10000", "--dims", "384", "--repeats", "3", "--min-time", "0.05"], []),
    "ann": (["--n", "10000", "--queries", "200", "--repeats", "1", "--build-threads", "1",
             "--ef", "10,20,40,80,160,320"], []),
    "memory": (["--n", "10000", "--queries", "200", "--repeats", "1"], []),
    "graph": (["--nodes", "5000", "--edges", "20000", "--starts", "20", "--repeats", "1",
               "--max-pass-seconds", "5", "--api-items", "1000"], []),
    "attention": (["--quick"], []),
    "learning": (["--quick", "--n", "5000", "--pool", "2000", "--steps", "100,500",
                  "--task-steps", "300", "--rounds", "2"], []),
    "embed": (["--quick", "--sample", "200", "--throughput", "200", "--repeats", "1",
               "--batches", "32"], []),
    "backends": (["--n", "5000", "--queries", "100"], []),
    "hybrid": (["--n", "10000", "--terms", "60", "--queries", "100"], []),
    "forgetting": (["--n", "10000", "--queries", "100", "--repeats", "1", "--stores", "100"],
                   []),
    "server": (["--n", "5000", "--queries", "200", "--concurrency", "1,16", "--duration", "2",
                "--recall-queries", "50", "--load", "python"], []),
    "failover": (["--n", "2000", "--kills", "1", "--steady", "1"], []),
    "cluster": (["--n", "5000", "--queries", "50", "--searches", "200", "--threads", "1,4",
                 "--no-kill", "--graph-events", "300", "--graph-seeds", "20",
                 "--learning-events", "50"], []),
}

#: scripts of benchmarks/ that are tools, not benchmarks (never run by ``all``)
NOT_BENCHMARKS = {"make_1m": "derives the 1M x 384 data set: make_1m.py --out DIR, then "
                             "--data DIR on ann.py / kernels.py"}


@dataclass
class Run:
    """One script's run: what was asked, how it ended, what it printed and wrote."""

    name: str
    args: list[str]
    status: str = "not run"  # ok | failed (exit N) | timed out | skipped (...)
    seconds: float = 0.0
    stdout: str = ""
    stderr_tail: str = ""
    numbers: dict[str, Any] | None = field(default=None)
    notes: list[str] = field(default_factory=list)


def run_script(name: str, args: list[str], timeout: float, workdir: Path) -> Run:
    """Run ``benchmarks/<name>.py`` with ``args`` and ``--json``; never raises."""
    run = Run(name, args)
    out_json = workdir / f"{name}.json"
    cmd = [sys.executable, str(HERE / f"{name}.py"), *args, "--json", str(out_json)]
    t0 = time.perf_counter()
    print(f"== {name}: {' '.join(args)}", flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=str(HERE.parent))
    except subprocess.TimeoutExpired as exc:
        run.status = f"timed out after {timeout:.0f} s"
        run.stdout = _text(exc.stdout)
        run.stderr_tail = _text(exc.stderr)[-3000:]
    else:
        run.stdout, run.stderr_tail = proc.stdout, proc.stderr[-3000:]
        run.status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    run.seconds = time.perf_counter() - t0
    run.notes = [line.strip() for line in run.stdout.splitlines()
                 if _NOTE.search(line)][:8]
    if out_json.is_file():
        try:
            run.numbers = json.loads(out_json.read_text())
        except ValueError as exc:
            run.stderr_tail += f"\n(unreadable --json output: {exc})"
    print(f"   {run.status} in {run.seconds:.0f} s", flush=True)
    return run


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def environment() -> dict[str, Any]:
    """What ran: ``python -m agentdb`` (version, backend, SIMD paths), CPU and Python."""
    about = subprocess.run([sys.executable, "-m", "agentdb"], capture_output=True, text=True,
                           timeout=60, cwd=tempfile.gettempdir())
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "agentdb": about.stdout.strip() or about.stderr.strip()[-500:],
            "python": sys.version.split()[0], "platform": platform.platform(),
            "cpu": cpu, "cores": os.cpu_count()}


def plot_recall_qps(ann: dict[str, Any] | None, path: Path) -> str:
    """Write recall@10 vs QPS of every ANN library to ``path``; returns a note."""
    if not ann or not ann.get("results"):
        return "no ANN numbers to plot (benchmarks/ann.py did not run or failed)"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install '.[bench]'): no recall/QPS plot"
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for res in ann["results"]:
        pts = [p for p in res.get("curve") or [] if "qps" in p]
        if not pts:
            continue
        ax.plot([p["recall"] for p in pts], [p["qps"] for p in pts], marker="o",
                label=f"{res['library']} {res.get('version') or ''}".strip())
    cfg = ann.get("config", {})
    env = ann.get("environment", {})
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (1 thread)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"ANN, n={cfg.get('n')}, {cfg.get('queries')} queries, "
                 f"M={cfg.get('M')}, efC={cfg.get('ef_construction')}", fontsize=10)
    tag = env.get("agentdb_backend") or ""
    if tag:
        fig.text(0.01, 0.01, str(tag)[:110], fontsize=6, alpha=0.7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return f"wrote {path.name}"


def write_report(runs: list[Run], env: dict[str, Any], out: Path, quick: bool) -> None:
    """``report.md``, ``report.json`` and ``recall_qps.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    ann = next((r.numbers for r in runs if r.name == "ann" and r.numbers), None)
    plot_note = plot_recall_qps(ann, out / "recall_qps.png")
    payload = {"environment": env, "quick": quick, "plot": plot_note,
               "runs": [asdict(r) for r in runs]}
    (out / "report.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    lines = [f"# AgentDB benchmark report ({'quick' if quick else 'full'} sizes)", "",
             f"- date: {env['date']}", f"- cpu: {env['cpu']} ({env['cores']} cores)",
             f"- python: {env['python']} on {env['platform']}", "", "```",
             env["agentdb"], "```", "",
             "| script | arguments | status | seconds |", "|---|---|---|---:|"]
    for r in runs:
        lines.append(f"| {r.name} | `{' '.join(r.args)}` | {r.status} | {r.seconds:.0f} |")
    noted = [(r.name, n) for r in runs for n in r.notes]
    if noted:
        lines += ["", "Notes the scripts printed (parts skipped or failed):", ""]
        lines += [f"- {name}: {note}" for name, note in noted]
    lines += ["", f"Plot: {plot_note}", ""]
    if (out / "recall_qps.png").is_file():
        lines += ["![recall@10 vs QPS](recall_qps.png)", ""]
    for r in runs:
        lines += [f"## {r.name}", "", f"`python benchmarks/{r.name}.py {' '.join(r.args)}` "
                  f"-- {r.status}, {r.seconds:.0f} s", "", "```", r.stdout.rstrip(), "```", ""]
        if r.status != "ok" and r.stderr_tail.strip():
            lines += ["End of its error output:", "", "```", r.stderr_tail.rstrip(), "```", ""]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks all [--quick] [--only a,b] [--out DIR] [--timeout S]``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["all"], help="run every benchmark script")
    p.add_argument("--quick", action="store_true", help="small sizes (about 4 minutes)")
    p.add_argument("--only", default="", help=f"comma list from {','.join(SCRIPTS)}")
    p.add_argument("--skip", default="", help="comma list of scripts not to run")
    p.add_argument("--out", type=Path, default=Path("bench-report"), help="report folder")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds per script (default 900 quick, 14400 full)")
    p.add_argument("--list", action="store_true", help="show the scripts and their arguments")
    args = p.parse_args(argv)
    names = [n for n in (args.only.split(",") if args.only else SCRIPTS) if n]
    unknown = sorted(set(names + [n for n in args.skip.split(",") if n]) - set(SCRIPTS))
    if unknown:
        p.error(f"unknown script(s) {', '.join(unknown)}; known: {', '.join(SCRIPTS)}")
    names = [n for n in names if n not in set(args.skip.split(","))]
    pick = 0 if args.quick else 1
    if args.list:
        for n in names:
            print(f"{n:10s} python benchmarks/{n}.py {' '.join(SCRIPTS[n][pick])}")
        return 0
    timeout = args.timeout or (900.0 if args.quick else 14400.0)
    env = environment()
    print(env["agentdb"], flush=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="agentdb-bench-") as tmp:
        for n in names:
            runs.append(run_script(n, SCRIPTS[n][pick], timeout, Path(tmp)))
            write_report(runs, env, args.out, args.quick)  # a partial report survives ^C
    print(f"report: {args.out / 'report.md'} ({sum(r.status == 'ok' for r in runs)} of "
          f"{len(runs)} scripts ok)")
    return 0 if all(r.status == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
