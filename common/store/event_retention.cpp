// See event_retention.hpp.
#include "common/store/event_retention.hpp"

#include <spdlog/spdlog.h>

#include "common/store/event_log.hpp"

namespace phonefarm::store {

void EventRetention::round() {
  const WallMs cutoff = clock_.wallNowMs() - options_.max_age.count();
  store_.submit<std::int64_t>(
      [cutoff, max = options_.max_events, batch = options_.batch](Db& db) {
        return EventLog(db).prune(cutoff, max, batch);
      },
      [this](Result<std::int64_t> deleted) {
        const std::int64_t n = deleted ? *deleted : 0;
        if (!deleted) spdlog::warn("events.prune_failed error=\"{}\"", deleted.error().message);
        loop_.post([this, n] {
          pruned_ += static_cast<std::uint64_t>(n);
          round_pruned_ += static_cast<std::uint64_t>(n);
          if (n >= options_.batch) {
            loop_.post([this] { round(); });  // more to drop: the next batch, after what is queued on the loop
            return;
          }
          if (round_pruned_ > 0) spdlog::info("events.pruned events={} total={}", round_pruned_, pruned_);
          round_pruned_ = 0;
          loop_.startTimer(options_.interval, [this] { round(); });
        });
      });
}

}  // namespace phonefarm::store
