// See event_feed.hpp. Locking: Shared::mutex guards the subscription list and
// the wake-up flags; each subscription's mutex guards what its reader takes.
// The feed thread never holds both, and calls `wake` with neither.
#include "common/store/event_feed.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>

#include "common/os/thread_name.hpp"

namespace phonefarm::store {

struct EventSubscription::Shared {
  std::mutex mutex;
  std::condition_variable cv;
  bool dirty = false;  // something to do: a commit, a new subscription, room in a paced one
  bool stopping = false;
  std::vector<std::shared_ptr<EventSubscription>> subs;

  void kick() {
    {
      std::lock_guard lock(mutex);
      dirty = true;
    }
    cv.notify_one();
  }
};

EventSubscription::EventSubscription(std::weak_ptr<Shared> feed, EventFilter filter, std::optional<std::int64_t> after,
                                     std::size_t limit, bool overflow_when_full,
                                     std::optional<std::chrono::steady_clock::time_point> deadline,
                                     std::function<void()> wake)
    : feed_(std::move(feed)),
      filter_(std::move(filter)),
      limit_(limit),
      overflow_when_full_(overflow_when_full),
      deadline_(deadline),
      wake_(std::move(wake)),
      next_after_(after.value_or(0)),
      from_now_(!after),
      cursor_(after.value_or(0)) {}

EventDelivery EventSubscription::take() {
  EventDelivery d;
  bool was_full = false;
  {
    std::lock_guard lock(mutex_);
    was_full = queue_.size() >= limit_;
    d.reset_oldest = std::exchange(reset_oldest_, std::nullopt);
    d.events.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
    queue_.clear();
    d.overflow_after = overflow_after_;
    d.expired = expired_;
    d.cursor = cursor_;
  }
  // A paced subscription stopped reading at its limit: there is room again.
  if (was_full) {
    if (auto feed = feed_.lock()) feed->kick();
  }
  return d;
}

void EventSubscription::cancel() {
  {
    std::lock_guard lock(mutex_);
    if (done_) return;
    done_ = true;
  }
  if (auto feed = feed_.lock()) feed->kick();
}

EventFeed::EventFeed(EventFeedOptions options)
    : options_(std::move(options)), shared_(std::make_shared<EventSubscription::Shared>()) {
  options_.queue_limit = std::max<std::size_t>(1, options_.queue_limit);
  options_.page = std::max<std::size_t>(1, options_.page);
}

EventFeed::~EventFeed() { stop(); }

void EventFeed::start() {
  db_ = Db::open(options_.path);
  live_cursor_ = EventLog(*db_).lastSeq();
  thread_ = std::thread([this] {
    os::setCurrentThreadName("pf-events");
    run();
  });
}

void EventFeed::stop() {
  {
    std::lock_guard lock(shared_->mutex);
    shared_->stopping = true;
  }
  shared_->cv.notify_all();
  if (thread_.joinable()) thread_.join();
  db_.reset();
}

void EventFeed::notifyCommitted() { shared_->kick(); }

std::shared_ptr<EventSubscription> EventFeed::subscribe(EventFilter filter, std::optional<std::int64_t> after,
                                                        std::function<void()> wake, std::size_t limit,
                                                        bool overflow_when_full,
                                                        std::optional<std::chrono::milliseconds> wait) {
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (wait) deadline = std::chrono::steady_clock::now() + *wait;
  std::shared_ptr<EventSubscription> sub(new EventSubscription(shared_, std::move(filter), after,
                                                               limit == 0 ? options_.queue_limit : limit,
                                                               overflow_when_full, deadline, std::move(wake)));
  {
    std::lock_guard lock(shared_->mutex);
    shared_->subs.push_back(sub);
    shared_->dirty = true;
  }
  shared_->cv.notify_one();
  return sub;
}

std::size_t EventFeed::subscriptions() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->subs.size();
}

void EventFeed::run() {
  std::unique_lock lock(shared_->mutex);
  while (!shared_->stopping) {
    if (!shared_->dirty) {
      std::optional<std::chrono::steady_clock::time_point> earliest;
      for (const auto& sub : shared_->subs) {
        if (sub->deadline_ && (!earliest || *sub->deadline_ < *earliest)) earliest = sub->deadline_;
      }
      if (earliest) {
        shared_->cv.wait_until(lock, *earliest);
      } else {
        shared_->cv.wait(lock);
      }
      if (shared_->stopping) break;
    }
    shared_->dirty = false;
    const auto subs = shared_->subs;
    lock.unlock();
    try {
      step(subs);
    } catch (const std::exception& e) {
      // A read failed (I/O, corruption): the readers wait for the next commit.
      spdlog::error("events.read_failed error=\"{}\"", e.what());
    }
    lock.lock();
    std::erase_if(shared_->subs, [](const std::shared_ptr<EventSubscription>& sub) {
      std::lock_guard sub_lock(sub->mutex_);
      return sub->done_;
    });
  }
}

void EventFeed::step(const std::vector<std::shared_ptr<EventSubscription>>& subs) {
  EventLog log(*db_);
  // 1. What committed since the last step, read once for every live reader.
  const std::int64_t head = log.lastSeq();
  // Nobody live: nothing to read (a catching-up subscription reads its own
  // pages up to live_cursor_).
  const bool any_live = std::any_of(subs.begin(), subs.end(), [](const auto& sub) { return sub->live_; });
  if (!any_live) live_cursor_ = head;
  while (live_cursor_ < head) {
    EventPage page = log.readAfter(live_cursor_, head, EventFilter{}, options_.page, options_.page);
    std::vector<std::shared_ptr<const FeedEvent>> events;
    events.reserve(page.events.size());
    for (auto& e : page.events) {
      auto fe = std::make_shared<FeedEvent>();
      fe->json = eventJson(e);
      fe->event = std::move(e);
      events.push_back(std::move(fe));
    }
    for (const auto& sub : subs) {
      if (sub->live_) deliverLive(*sub, events, page.scanned_to);
    }
    live_cursor_ = page.scanned_to;
  }
  // 2. New subscriptions, and those catching up from an older seq.
  bool more = false;
  const auto now = std::chrono::steady_clock::now();
  for (const auto& sub : subs) {
    if (!sub->initialised_) initialise(*sub);
    if (!sub->live_ && catchUp(*sub)) more = true;
    if (sub->deadline_ && *sub->deadline_ <= now) {
      bool expired = false;
      {
        std::lock_guard lock(sub->mutex_);
        if (!sub->done_) expired = sub->done_ = sub->expired_ = true;
      }
      if (expired) sub->wake_();
    }
  }
  if (more) {
    std::lock_guard lock(shared_->mutex);
    shared_->dirty = true;
  }
}

void EventFeed::initialise(EventSubscription& sub) {
  sub.initialised_ = true;
  if (sub.from_now_) {
    sub.next_after_ = live_cursor_;
    std::lock_guard lock(sub.mutex_);
    sub.cursor_ = live_cursor_;
    return;
  }
  // A seq this database never issued (another agent's, a wiped state dir)
  // resumes from the oldest kept, said with a reset, like one retention dropped.
  if (sub.next_after_ > live_cursor_) {
    const auto oldest = EventLog(*db_).oldestSeq();
    const std::int64_t from = oldest.value_or(live_cursor_ + 1);
    sub.next_after_ = from - 1;
    {
      std::lock_guard lock(sub.mutex_);
      sub.reset_oldest_ = from;
      sub.cursor_ = sub.next_after_;
    }
    sub.wake_();
  }
}

bool EventFeed::catchUp(EventSubscription& sub) {
  std::size_t room = 0;
  {
    std::lock_guard lock(sub.mutex_);
    if (sub.done_) return false;
    room = sub.limit_ > sub.queue_.size() ? sub.limit_ - sub.queue_.size() : 0;
  }
  if (room == 0) return false;  // its reader's take() kicks the feed again
  EventLog log(*db_);
  bool woke = false;
  // Retention may have deleted what follows the resume point (before this
  // page, or meanwhile): say so, and go on from the oldest kept.
  std::optional<std::int64_t> reset;
  if (sub.next_after_ < live_cursor_) {
    const auto oldest = log.oldestSeq();
    if (!oldest || sub.next_after_ + 1 < *oldest) {
      reset = oldest.value_or(live_cursor_ + 1);
      sub.next_after_ = *reset - 1;
    }
  }
  EventPage page =
      log.readAfter(sub.next_after_, live_cursor_, sub.filter_, std::min(room, options_.page), options_.page * 4);
  {
    std::lock_guard lock(sub.mutex_);
    if (reset) {
      sub.reset_oldest_ = reset;
      woke = true;
    }
    for (auto& e : page.events) {
      auto fe = std::make_shared<FeedEvent>();
      fe->json = eventJson(e);
      fe->event = std::move(e);
      sub.queue_.push_back(std::move(fe));
      woke = true;
    }
    sub.cursor_ = page.scanned_to;
  }
  sub.next_after_ = page.scanned_to;
  if (sub.next_after_ >= live_cursor_) sub.live_ = true;
  if (woke) sub.wake_();
  return !sub.live_ && room > page.events.size();
}

void EventFeed::deliverLive(EventSubscription& sub, const std::vector<std::shared_ptr<const FeedEvent>>& events,
                            std::int64_t upto) {
  bool woke = false;
  {
    std::lock_guard lock(sub.mutex_);
    if (sub.done_) return;
    for (const auto& e : events) {
      if (e->event.seq <= sub.next_after_ || !sub.filter_.matches(e->event)) continue;
      if (sub.queue_.size() >= sub.limit_) {
        if (sub.overflow_when_full_) {
          // Everything up to the cursor is queued and will be written first.
          sub.overflow_after_ = sub.cursor_;
          sub.done_ = true;
        } else {
          sub.live_ = false;  // a page is full: catches up again once taken
        }
        woke = true;
        break;
      }
      sub.queue_.push_back(e);
      sub.cursor_ = e->event.seq;
      sub.next_after_ = e->event.seq;
      woke = true;
    }
    if (sub.live_ && !sub.done_) {
      sub.cursor_ = upto;
      sub.next_after_ = upto;
    }
  }
  if (woke) sub.wake_();
}

}  // namespace phonefarm::store
