// EventFeed: delivers the event log (event_log.hpp) to its readers — the
// SSE streams and long polls of GET /events — without ever slowing the
// writer. One thread (pf-events) with its own read-only use of a second
// SQLite connection (WAL: readers never block the writer): after each commit
// (Store's on_commit) it reads the new events once and hands them to every
// live subscription; a subscription that resumes from an older seq first
// catches up page by page, paced by its reader, then turns live. Every
// subscription has a bounded queue: a live one that falls behind that bound
// is ended with an overflow mark carrying the seq to resume after; the feed
// never waits for a reader.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/store/event_log.hpp"

namespace phonefarm::store {

struct EventFeedOptions {
  std::filesystem::path path;  // the store's database
  // Events queued for one subscription before a live one overflows (an SSE
  // client that does not keep up) or a paced one stops filling (a page).
  std::size_t queue_limit = 4096;
  std::size_t page = 256;  // rows per read
};

// One event as the feed hands it out: read once, its JSON built once, shared
// by every subscription it matches.
struct FeedEvent {
  Event event;
  std::string json;  // eventJson(event)
};

// What a subscription's reader takes at once.
struct EventDelivery {
  // Set before `events`: retention deleted events after the resume point;
  // delivery goes on from this, the oldest seq still kept.
  std::optional<std::int64_t> reset_oldest;
  std::vector<std::shared_ptr<const FeedEvent>> events;
  // Set after `events`: the subscription fell too far behind and is over;
  // resume with after = this seq (no gap, no duplicate).
  std::optional<std::int64_t> overflow_after;
  bool expired = false;     // its deadline passed (long poll)
  std::int64_t cursor = 0;  // every matching event up to this seq has been delivered
};

class EventFeed;

class EventSubscription {
 public:
  // Any thread. Takes everything queued.
  EventDelivery take();
  // The reader is gone; the feed forgets the subscription. Idempotent.
  void cancel();

 private:
  friend class EventFeed;
  struct Shared;
  EventSubscription(std::weak_ptr<Shared> feed, EventFilter filter, std::optional<std::int64_t> after,
                    std::size_t limit, bool overflow_when_full,
                    std::optional<std::chrono::steady_clock::time_point> deadline, std::function<void()> wake);

  // Immutable after construction.
  std::weak_ptr<Shared> feed_;
  EventFilter filter_;
  std::size_t limit_;
  bool overflow_when_full_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::function<void()> wake_;
  // The feed thread's own.
  std::int64_t next_after_ = 0;  // where reading goes on
  bool from_now_ = false;
  bool initialised_ = false;
  bool live_ = false;
  // Shared with the reader, under mutex_.
  std::mutex mutex_;
  std::deque<std::shared_ptr<const FeedEvent>> queue_;
  std::optional<std::int64_t> reset_oldest_;
  std::optional<std::int64_t> overflow_after_;
  std::int64_t cursor_ = 0;
  bool expired_ = false;
  bool done_ = false;  // overflowed, expired or cancelled: the feed drops it
};

class EventFeed {
 public:
  explicit EventFeed(EventFeedOptions options);
  ~EventFeed();  // stop()
  EventFeed(const EventFeed&) = delete;
  EventFeed& operator=(const EventFeed&) = delete;

  // Opens the read connection (the store must have migrated the database)
  // and starts the thread. Throws SqliteError.
  void start();
  void stop();

  // A batch committed (Store::on_commit; any thread, cheap).
  void notifyCommitted();

  // Events after `after` that match (nullopt: only those committed from now
  // on). `wake` runs on the feed thread, without locks, whenever the
  // subscription has something to take; it must be cheap (post elsewhere).
  // `limit` bounds the queue (0 = options' queue_limit); `overflow_when_full`
  // ends a live subscription that reaches it (a stream) instead of pausing
  // it (a page). `wait`: it expires that long from now (long poll).
  std::shared_ptr<EventSubscription> subscribe(EventFilter filter, std::optional<std::int64_t> after,
                                               std::function<void()> wake, std::size_t limit = 0,
                                               bool overflow_when_full = true,
                                               std::optional<std::chrono::milliseconds> wait = {});

  std::size_t subscriptions() const;

 private:
  void run();
  void step(const std::vector<std::shared_ptr<EventSubscription>>& subs);
  void deliverLive(EventSubscription& sub, const std::vector<std::shared_ptr<const FeedEvent>>& events,
                   std::int64_t upto);
  bool catchUp(EventSubscription& sub);  // true when more is left to read now
  void initialise(EventSubscription& sub);

  EventFeedOptions options_;
  std::shared_ptr<EventSubscription::Shared> shared_;
  std::unique_ptr<Db> db_;        // the feed thread's read connection
  std::int64_t live_cursor_ = 0;  // every event up to this seq has been read and handed out
  std::thread thread_;
};

}  // namespace phonefarm::store
