-- wrk -s bench/wrk_summary.lua: after the run, one line
--   wrk-json: {...}
-- with the counts and latency percentiles bench_http.py reads, instead of
-- scraping wrk's human text.  Only done() is defined, so wrk keeps its
-- static-request fast path (no per-request Lua).  Times in microseconds;
-- "status" counts responses with a status above 399 (wrk's "Non-2xx or
-- 3xx responses"); "bytes" counts every byte read, partial responses too.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'wrk-json: {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}, ' ..
    '"latency_us": {"min": %d, "p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency.min, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
