"""The common latency/throughput harness: one timing method for every backend."""

from modelport.bench.harness import BenchResult, BenchSettings, LatencyStats, benchmark, make_feeds

__all__ = ["BenchResult", "BenchSettings", "LatencyStats", "benchmark", "make_feeds"]
