"""wrk as the load generator: found (or installed with apt-get once), driven by a Lua script that
reads prepared raw requests from a file and reports its summary as one JSON line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path


def find_wrk(install: bool = True) -> str | None:
    """The wrk binary; when missing, try ``apt-get install -y wrk`` once (root only). None: use Python."""
    found = shutil.which("wrk")
    if found or not install:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("  wrk not installed: trying apt-get install -y wrk …", flush=True)
        try:
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, timeout=180,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        except (OSError, subprocess.TimeoutExpired):
            pass
    return shutil.which("wrk")


# The wrk script: requests are read from a file of "<length>\n<raw request>" records. With
# CYCLE they repeat; without, each is sent once and the thread stops when they run out, noting
# when (wrk itself divides by the whole -d duration, so the rate is computed from these times).
_WRK_LUA = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]]
local function now()
  local tv = ffi.new("bench_timeval")
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) / 1e6
end

local DATA, CYCLE, FILLER = %(data)s, %(cycle)s, %(filler)s
local threads = {}
function setup(thread)
  thread:set("started_at", now())
  table.insert(threads, thread)
end

local reqs, i = {}, 0
finished_at = 0
function init(args)
  local f = assert(io.open(DATA, "rb"))
  while true do
    local n = f:read("*l")
    if not n then break end
    reqs[#reqs + 1] = f:read(tonumber(n))
  end
  f:close()
end

function request()
  i = i + 1
  if i > #reqs then
    if CYCLE then
      i = 1
    else
      if finished_at == 0 then
        finished_at = now()
        wrk.thread:stop()
      end
      return FILLER
    end
  end
  return reqs[i]
end

function done(summary, latency, requests)
  local started, finished = nil, 0
  for _, t in ipairs(threads) do
    local s = t:get("started_at")
    if started == nil or s < started then started = s end
    local f = t:get("finished_at")
    if f and f > finished then finished = f end
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH-JSON {\"requests\": %%d, \"duration_us\": %%d, \"status_errors\": %%d, \"socket_errors\": %%d, " ..
    "\"timeouts\": %%d, \"p50_ms\": %%.3f, \"p90_ms\": %%.3f, \"p99_ms\": %%.3f, \"max_ms\": %%.3f, " ..
    "\"started\": %%.6f, \"finished\": %%.6f}\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, started, finished))
end
"""


def _lua_string(data: bytes) -> str:
    return '"' + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b}" for b in data) + '"'


def run_wrk(wrk: str, base: str, requests: list, *, cycle: bool, connections: int, seconds: float,
            workdir: Path, filler) -> dict:
    """``requests`` (``bench.load.Req``) at ``base`` on ``connections`` connections for ``seconds``,
    over and over with ``cycle``, else each once; ``filler`` is what a connection sends after the
    one-time requests ran out (its answers are not counted)."""
    data = workdir / f"wrk-{uuid.uuid4().hex}.bin"
    with open(data, "wb") as handle:
        for req in requests:
            raw = req.raw()
            handle.write(f"{len(raw)}\n".encode() + raw)
    script = workdir / f"wrk-{uuid.uuid4().hex}.lua"
    script.write_text(_WRK_LUA % {"data": _lua_string(str(data).encode()), "cycle": "true" if cycle else "false",
                                  "filler": _lua_string(filler.raw())})
    # One wrk thread: it keeps 16 connections busy at a fraction of a core, leaving the rest
    # of this 2-core class of machine to the server.
    command = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
               "-s", str(script), base + filler.path]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    data.unlink(missing_ok=True)
    script.unlink(missing_ok=True)
    line = next((line for line in out.stdout.splitlines() if line.startswith("BENCH-JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{out.stdout}\n{out.stderr}")
    raw = json.loads(line[len("BENCH-JSON "):])
    elapsed = raw["duration_us"] / 1e6
    if raw["finished"] > 0:  # ran out of one-time requests before the duration
        elapsed = raw["finished"] - raw["started"]
    errors = raw["status_errors"] + raw["socket_errors"] + raw["timeouts"]
    return {"requests": raw["requests"], "seconds": round(elapsed, 2), "rps": raw["requests"] / elapsed,
            "p50_ms": raw["p50_ms"], "p90_ms": raw["p90_ms"], "p99_ms": raw["p99_ms"], "max_ms": raw["max_ms"],
            "errors": errors, "status_errors": raw["status_errors"], "exhausted": raw["finished"] > 0}

