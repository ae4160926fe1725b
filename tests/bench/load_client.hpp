// LoadClient: a single-threaded epoll HTTP/1.1 load generator for the
// benchmarks. Keeps `connections` keep-alive connections busy, each sending
// the next request as soon as the previous response is complete, and records
// every request's latency. Small on purpose: the agent, not the client, must
// be the bottleneck on a 2-core machine.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace phonefarm::bench {

struct LoadResult {
  std::vector<double> latencies_us;  // one per completed request
  std::vector<int> statuses;         // in completion order
  double seconds = 0;                // wall time of the whole run
  std::size_t errors = 0;            // connection failures
};

// Builds request i (0 .. total-1) as raw HTTP bytes.
using RequestFactory = std::function<std::string(std::size_t)>;

LoadResult runLoad(const std::string& host, std::uint16_t port, std::size_t connections, std::size_t total,
                   const RequestFactory& make_request);

double percentile(std::vector<double> values, double p);

}  // namespace phonefarm::bench
