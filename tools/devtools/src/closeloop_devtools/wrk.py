"""wrk, the HTTP load generator `make bench-ingest` drives: the Lua script and reading its result.

wrk (Debian's package) runs as its own process, so the load generator never shares the Python
interpreter it measures. Each request posts the next line of a file of pre-signed bodies
(`signature<TAB>body`, one a line); the lines are formatted into whole requests when wrk starts,
so a request costs wrk no work beyond sending it. With several wrk threads, thread k sends lines
k, k + T, k + 2T, ..., so no two threads send the same body. After the run the script prints one
line, `BENCH {json}`: exact counts and latency percentiles in microseconds (wrk's `done` hook),
which spares parsing wrk's rounded, unit-suffixed summary.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = r"""
-- Posts pre-signed bodies: args are the bodies file, the signature header and the thread count.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local file, header, step = args[1], args[2], tonumber(args[3])
  requests = {}
  wraps = 0
  local n = 0
  for line in io.lines(file) do
    if n % step == id then
      local tab = string.find(line, "\t", 1, true)
      local headers = {}
      headers["Content-Type"] = "application/json"
      headers[header] = string.sub(line, 1, tab - 1)
      requests[#requests + 1] = wrk.format("POST", nil, headers, string.sub(line, tab + 1))
    end
    n = n + 1
  end
  position = 0
end

function request()
  position = position + 1
  if position > #requests then
    position = 1
    wraps = wraps + 1
  end
  return requests[position]
end

function done(summary, latency, requests)
  local wrapped = 0
  for _, thread in ipairs(threads) do
    wrapped = wrapped + thread:get("wraps")
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "non_2xx_3xx": %d, "socket_errors": %d, ' ..
    '"timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "wrapped": %d}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    wrapped))
end
"""


class WrkMissing(RuntimeError):
    """wrk is not installed."""


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    timeouts: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    wrapped: int  # times a thread came back to its first body (those repeats are duplicates)

    @property
    def ok(self) -> int:
        """Responses with a 2xx (or 3xx) status."""
        return self.requests - self.non_2xx

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def ok_rate(self) -> float:
        return self.ok / self.seconds


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise WrkMissing("the benchmark needs wrk: install Debian's wrk package (make bench-tools)")
    return found


def run_wrk(
    url: str,
    *,
    script: Path,
    bodies: Path,
    signature_header: str,
    threads: int,
    connections: int,
    seconds: float,
    timeout_seconds: float = 10.0,
) -> WrkResult:
    """One wrk run against `url`; its result (raises when wrk fails or prints no result)."""
    command = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        f"--timeout={timeout_seconds:g}s",
        "--latency",
        "-s",
        str(script),
        url,
        "--",
        str(bodies),
        signature_header,
        str(threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(lines[-1].removeprefix("BENCH "))
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        non_2xx=raw["non_2xx_3xx"],
        socket_errors=raw["socket_errors"],
        timeouts=raw["timeouts"],
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        wrapped=raw["wrapped"],
    )
