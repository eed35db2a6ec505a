"""Benchmark: Caffe's float32 GEMM under each of OpenBLAS's kernel sets (OPENBLAS_CORETYPE).

Run:  python benchmarks/bench_openblas.py [--cores auto,Prescott,Haswell,SkylakeX]
                                          [--n 2048] [--repeats 3] [--threads T]
                                          [--quick] [--json PATH]

Debian 12's OpenBLAS 0.3.21 does not recognise recent Intel CPUs and falls back to its SSE3
("Prescott") kernels; the caffe package therefore sets OPENBLAS_CORETYPE from the CPU flags
(SkylakeX with AVX-512, Haswell with AVX2 + FMA) unless the user set it
(``caffe/_openblas_coretype.py``).  This script measures what that choice is worth: for
each core type in --cores it runs, in a process of its own (OpenBLAS reads the variable
once, when it loads), ``frcnn.bench.arithmetic.caffe_gemm_rate(n, repeats)``: one Caffe
InnerProduct layer, an n x n x n float32 GEMM by the OpenBLAS Caffe links, best of
--repeats after a warm-up.  "auto" runs with OPENBLAS_CORETYPE removed from the child's
environment, i.e. with the caffe package's own choice; any other name is set as
OPENBLAS_CORETYPE.  OPENBLAS_NUM_THREADS is set only with --threads (otherwise the child
inherits this environment's).  --quick: n 256, 1 repeat (a smoke run).

A child also asks the loaded OpenBLAS which kernels it runs (``openblas_get_corename``).
A core type that is not measured is a row with the reason, not a crash: the child died
(e.g. SIGILL: SkylakeX kernels on a CPU without AVX-512), failed, timed out (--timeout),
or OpenBLAS did not run the kernels asked for (an unknown name, or one this build maps to
other kernels: the child stops with status 3 before measuring).

--json PATH writes (atomically) {"n", "repeats", "threads" (--threads or null), "quick",
"env_coretype" (OPENBLAS_CORETYPE in this script's environment, which "auto" does not pass
on, or null), "cpu_flags" ({flag: bool} for avx2, fma, avx512f from /proc/cpuinfo; {} when
it cannot be read), "rows": [{"coretype" ("auto" or the name), "chosen" (the
OPENBLAS_CORETYPE in effect in the child, null when unset), "kernel" (what OpenBLAS says it
runs, null when it cannot say), "threads" (OpenBLAS's thread count in the child, or null),
"gmac_s" (float, null when not measured), "seconds" (best GEMM time, or null), "rc" (the
child's exit status; negative: killed by that signal), "error" (why not measured; absent
when measured)}]}.

Exit status 0 when at least one core type was measured, else 1.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys

from frcnn.fileio import write_atomic

DEFAULT_CORES = ("auto", "Prescott", "Haswell", "SkylakeX")
CPU_FLAGS = ("avx2", "fma", "avx512f")
IGNORED_STATUS = 3  # the child's status when OpenBLAS runs other kernels than asked

# The child: argv n, repeats, requested core type ('' for auto); prints one JSON line.
CHILD = r'''
import ctypes, json, os, sys
n, repeats, requested = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
from frcnn.bench.nets import import_caffe
caffe = import_caffe()  # loads libopenblas (caffe sets OPENBLAS_CORETYPE first, if unset)
from caffe import _openblas_coretype
row = {"chosen": os.environ.get("OPENBLAS_CORETYPE") or _openblas_coretype.CORETYPE or None,
       "kernel": None, "threads": None}
with open("/proc/self/maps") as maps:
    libs = sorted({l.split()[-1] for l in maps if "blas" in l.lower() and "/" in l})
for path in libs:  # numpy's bundled OpenBLAS has prefixed names: this finds Caffe's
    try:
        lib = ctypes.CDLL(path)
        corename = lib.openblas_get_corename
    except (OSError, AttributeError):
        continue
    corename.restype = ctypes.c_char_p
    row["kernel"] = corename().decode(errors="replace").strip() or None
    try:
        row["threads"] = int(lib.openblas_get_num_threads())
    except AttributeError:
        pass
    break
if requested and row["kernel"] and row["kernel"].lower() != requested.lower():
    row["error"] = (f"OpenBLAS runs its {row['kernel']} kernels for "
                    f"OPENBLAS_CORETYPE={requested}")
    print(json.dumps(row), flush=True)
    sys.exit(%d)
from frcnn.bench.arithmetic import caffe_gemm_rate
rate = caffe_gemm_rate(n, repeats)
row.update(gmac_s=rate["macs_per_s"] / 1e9, seconds=rate["seconds"])
print(json.dumps(row), flush=True)
''' % IGNORED_STATUS


def cpu_flags(path: str | os.PathLike = "/proc/cpuinfo") -> dict[str, bool]:
    """{flag: present} for CPU_FLAGS from the first 'flags' line of ``path``; {} when it
    cannot be read or has no such line."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return {flag: flag in have for flag in CPU_FLAGS}
    except OSError:
        pass
    return {}


def child_command(coretype: str, n: int, repeats: int) -> list[str]:
    """The child process's argv for one core type ('auto': the caffe package's choice)."""
    return [sys.executable, "-c", CHILD, str(n), str(repeats),
            "" if coretype == "auto" else coretype]


def child_env(coretype: str, threads: int | None, base: dict | None = None) -> dict:
    """The child's environment: ``base`` (default os.environ) with OPENBLAS_CORETYPE removed
    for 'auto', else set; OPENBLAS_NUM_THREADS set only when ``threads`` is given."""
    env = dict(os.environ if base is None else base)
    if coretype == "auto":
        env.pop("OPENBLAS_CORETYPE", None)
    else:
        env["OPENBLAS_CORETYPE"] = coretype
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    return env


def _last_json(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _status_text(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exited with status {rc}"


def measure(coretype: str, n: int, repeats: int, threads: int | None = None,
            timeout: float | None = None) -> dict:
    """One core type in its own process: a row as the module docstring describes."""
    proc = subprocess.Popen(child_command(coretype, n, repeats), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env(coretype, threads))
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        timed_out = True
    rc = proc.returncode
    got = _last_json(out) or {}
    row = {"coretype": coretype, "chosen": got.get("chosen"), "kernel": got.get("kernel"),
           "threads": got.get("threads"), "gmac_s": None, "seconds": None, "rc": rc}
    gmac = got.get("gmac_s")
    if timed_out:
        row["error"] = f"timed out after {timeout:g} s (killed)"
    elif rc == 0 and isinstance(gmac, (int, float)) and gmac > 0 and not got.get("error"):
        row.update(gmac_s=float(gmac), seconds=got.get("seconds"))
    else:
        tail = [line.strip() for line in err.splitlines() if line.strip()]
        row["error"] = got.get("error") or (_status_text(rc) if rc else "no result printed") \
            + (f": {tail[-1][:300]}" if tail else "")
    return row


def print_table(result: dict, out=None) -> None:
    """The rows as a plain-text table on ``out`` (default: sys.stdout at call time)."""
    out = sys.stdout if out is None else out
    flags = result.get("cpu_flags") or {}
    print(f"Caffe InnerProduct GEMM {result['n']}^3 float32, best of {result['repeats']}; "
          f"CPU flags: " + (", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items())
                            or "not readable"), file=out)
    rows = result["rows"]
    base = next((r["gmac_s"] for r in rows if r["coretype"].lower() == "prescott"
                 and r["gmac_s"]), None)
    print(f"{'OPENBLAS_CORETYPE':<20} {'chosen':<10} {'kernel':<12} {'GMAC/s':>8} "
          f"{'ms':>9} {'x Prescott':>10}", file=out)
    for r in rows:
        if r["gmac_s"] is None:
            print(f"{r['coretype']:<20} {r['chosen'] or '-':<10} {r['kernel'] or '-':<12} "
                  f"failed (rc {r['rc']}): {r.get('error')}", file=out)
            continue
        ratio = f"{r['gmac_s'] / base:.2f}" if base else "-"
        print(f"{r['coretype']:<20} {r['chosen'] or '-':<10} {r['kernel'] or '-':<12} "
              f"{r['gmac_s']:>8.1f} {1e3 * r['seconds']:>9.2f} {ratio:>10}", file=out)


def parse_cores(text: str) -> list[str]:
    cores = [c.strip() for c in text.split(",") if c.strip()]
    if not cores:
        raise argparse.ArgumentTypeError("--cores needs at least one core type")
    bad = [c for c in cores if not c.replace("_", "").isalnum()]
    if bad:
        raise argparse.ArgumentTypeError(f"not a core type name: {', '.join(bad)}")
    return cores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_openblas", description=__doc__.split("\n")[0])
    parser.add_argument("--cores", type=parse_cores, default=list(DEFAULT_CORES),
                        help="comma-separated OPENBLAS_CORETYPE values; 'auto': the caffe "
                             "package's choice (default auto,Prescott,Haswell,SkylakeX)")
    parser.add_argument("--n", type=int, default=None, help="GEMM size n (default 2048)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed GEMMs per core type, best taken (default 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="OPENBLAS_NUM_THREADS for the children (default: not set)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds per core type before the child is killed (default 600)")
    parser.add_argument("--quick", action="store_true", help="n 256, 1 repeat (a smoke run)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures here (JSON)")
    args = parser.parse_args(argv)
    n = args.n if args.n is not None else 256 if args.quick else 2048
    repeats = args.repeats if args.repeats is not None else 1 if args.quick else 3
    if n < 1 or repeats < 1:
        parser.error("--n and --repeats must be at least 1")
    result = {"n": n, "repeats": repeats, "threads": args.threads, "quick": args.quick,
              "env_coretype": os.environ.get("OPENBLAS_CORETYPE") or None,
              "cpu_flags": cpu_flags(), "rows": []}
    for core in args.cores:
        print(f"[bench_openblas] {core}: {n}^3 GEMM, best of {repeats} ...", file=sys.stderr,
              flush=True)
        result["rows"].append(measure(core, n, repeats, args.threads, args.timeout))
    print_table(result)
    if args.json:
        write_atomic(args.json, (json.dumps(result, indent=2) + "\n").encode())
    return 0 if any(r["gmac_s"] is not None for r in result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
