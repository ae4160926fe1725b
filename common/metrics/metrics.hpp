// A small, dependency-free metrics registry rendered in the Prometheus text
// exposition format (version 0.0.4): counters, gauges and fixed-bucket
// histograms, each a family of children keyed by label values. Updates are
// safe from any thread (atomics for counters and gauges, a mutex per
// histogram child); the references the registry hands out stay valid for its
// lifetime.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace phonefarm::metrics {

// Label (name, value) pairs; a family's children must use the same names in
// the same order.
using Labels = std::vector<std::pair<std::string, std::string>>;

inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

class Counter {
 public:
  void inc(double by = 1.0);  // by >= 0
  // For counters kept elsewhere and copied in at scrape time.
  void set(double value) { value_.store(value, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void set(double value) { value_.store(value, std::memory_order_relaxed); }
  void inc(double by = 1.0);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);  // upper bounds, ascending, without +Inf
  void observe(double value);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<std::uint64_t> cumulative;  // per bound, then +Inf (== count)
    double sum = 0;
    std::uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  const std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<std::uint64_t> counts_;  // non-cumulative, one per bound plus +Inf
  double sum_ = 0;
};

// Latency buckets in seconds, for request durations.
std::vector<double> defaultSecondsBuckets();

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Finds or creates the child. Throws std::invalid_argument for a bad
  // metric or label name, or a name already registered with another type
  // (or, for histograms, other buckets).
  Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& histogram(std::string_view name, std::string_view help, const std::vector<double>& bounds,
                       const Labels& labels = {});

  // The exposition text: families sorted by name, each with HELP and TYPE.
  std::string render() const;

 private:
  struct Family;
  Family& family(std::string_view name, std::string_view help, int type, const Labels& labels);

  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Family>, std::less<>> families_;
};

// Exposition helpers, exposed for tests.
std::string escapeLabelValue(std::string_view value);
std::string formatValue(double value);

}  // namespace phonefarm::metrics
