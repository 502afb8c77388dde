"""The benchmark harness of dcihub: start servers, make requests, measure.

`benchmark_dcihub(options, make_requests)` is the one-call entry point for a new benchmark
(e.g. signed or encrypted requests): it starts `dcihub serve` with the given options over the
demo population, and returns max requests/s (wrk) and latency percentiles at constant rates
(open loop). `run.py` (the speed benchmark) uses the same pieces, plus the ceiling server.
"""

from .closed_loop import ClosedLoopSettings, Throughput
from .measure import Measurement, MessageTiming, benchmark_dcihub, check_answers, measure
from .open_loop import LatencyAtRate, OpenLoopSettings
from .processes import BenchmarkError, ChildProcesses
from .requests import UNIQUE, RequestSet, batch_lookup, uin_lookups, write_request_set
from .servers import DcihubOptions, prepare_population, start_ceiling, start_dcihub

__all__ = [
    "UNIQUE",
    "BenchmarkError",
    "ChildProcesses",
    "ClosedLoopSettings",
    "DcihubOptions",
    "LatencyAtRate",
    "Measurement",
    "MessageTiming",
    "OpenLoopSettings",
    "RequestSet",
    "Throughput",
    "batch_lookup",
    "benchmark_dcihub",
    "check_answers",
    "measure",
    "prepare_population",
    "start_ceiling",
    "start_dcihub",
    "uin_lookups",
    "write_request_set",
]
