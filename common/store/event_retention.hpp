// EventRetention: keeps the event log within [events] retention_days and
// max_events. In the background, in small batches: each batch is one short
// store job (the writer is never held for long); a full batch is followed by
// the next at once, otherwise the next round starts after `interval`.
#pragma once

#include <chrono>
#include <cstdint>

#include "common/clock.hpp"
#include "common/os/event_loop.hpp"
#include "common/store/store.hpp"

namespace phonefarm::store {

struct EventRetentionOptions {
  std::chrono::milliseconds max_age{std::chrono::days(7)};
  std::int64_t max_events = 1'000'000;
  std::int64_t batch = 1000;
  std::chrono::milliseconds interval{std::chrono::minutes(1)};
};

class EventRetention {
 public:
  // The loop and store must outlive it; call start() on the loop thread or
  // before the loop runs.
  EventRetention(Store& store, os::EventLoop& loop, const Clock& clock, EventRetentionOptions options)
      : store_(store), loop_(loop), clock_(clock), options_(options) {}
  void start() { round(); }
  std::uint64_t pruned() const { return pruned_; }  // loop thread

 private:
  void round();

  Store& store_;
  os::EventLoop& loop_;
  const Clock& clock_;
  EventRetentionOptions options_;
  std::uint64_t pruned_ = 0;
  std::uint64_t round_pruned_ = 0;
};

}  // namespace phonefarm::store
