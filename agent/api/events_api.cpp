// GET /events: the event log (common/store/event_log.hpp) to clients, either
// as a Server-Sent Events stream (Accept: text/event-stream) or as a
// long-poll JSON page. Both read through the EventFeed; neither touches the
// store writer. A stream is an http::BodyStream: the feed wakes the
// connection, which pulls what is queued and writes it as SSE frames.
//   ?after=SEQ        resume after this seq (SSE: Last-Event-ID wins)
//   ?process_id= ?phone_id= ?kind=K1,K2   filters
//   ?wait=N           long poll: at most N s (0..60) for a first event
//   ?limit=N          long poll: events per page (1..1000, default 100)
#include <algorithm>
#include <atomic>
#include <boost/json/serialize.hpp>
#include <limits>

#include "agent/api/api_handler.hpp"
#include "agent/api/error_responses.hpp"
#include "common/ids.hpp"

namespace phonefarm::api {
namespace {

constexpr std::int64_t kMaxWaitSeconds = 60;
constexpr std::int64_t kMaxPageLimit = 1000;
constexpr std::int64_t kDefaultPageLimit = 100;
constexpr std::chrono::seconds kHeartbeat{15};

struct EventsQuery {
  std::optional<std::int64_t> after;
  std::int64_t wait = 0;
  std::int64_t limit = kDefaultPageLimit;
  store::EventFilter filter;
};

void parseKinds(const std::string& key, std::string_view value, std::vector<std::string>& kinds, FieldErrors& errors) {
  while (true) {
    const auto comma = value.find(',');
    const std::string_view kind = value.substr(0, comma);
    if (!store::isEventKind(kind)) {
      addQueryError(errors, key, "Input should be a comma-separated list of event kinds (docs/api.md)",
                    "literal_error");
      return;
    }
    kinds.emplace_back(kind);
    if (comma == std::string_view::npos) return;
    value.remove_prefix(comma + 1);
  }
}

Validated<EventsQuery> parseEventsQuery(std::string_view query, std::string_view last_event_id) {
  EventsQuery q;
  FieldErrors errors;
  forEachQueryParameter(query, errors, [&](const std::string& key, const std::string& value) {
    if (key == "after") {
      q.after = parseQueryInteger(key, value, 0, std::numeric_limits<std::int64_t>::max(), errors);
    } else if (key == "wait") {
      if (auto n = parseQueryInteger(key, value, 0, kMaxWaitSeconds, errors)) q.wait = *n;
    } else if (key == "limit") {
      if (auto n = parseQueryInteger(key, value, 1, kMaxPageLimit, errors)) q.limit = *n;
    } else if (key == "process_id" || key == "phone_id") {
      if (!isValidId(value)) {
        addQueryError(errors, key, "Value error, not a valid id", "value_error");
      } else {
        (key == "process_id" ? q.filter.process_id : q.filter.phone_id) = value;
      }
    } else if (key == "kind") {
      parseKinds(key, value, q.filter.kinds, errors);
    }
  });
  // What an SSE client saw last: it reconnects with this, and it is newer
  // than the ?after= of the URL it first opened.
  if (!last_event_id.empty()) {
    if (auto n =
            parseQueryInteger("Last-Event-ID", last_event_id, 0, std::numeric_limits<std::int64_t>::max(), errors)) {
      q.after = *n;
    }
  }
  if (!errors.empty()) return errors;
  return q;
}

bool wantsEventStream(std::string_view accept) { return accept.find("text/event-stream") != std::string_view::npos; }

// One SSE stream: a feed subscription written out as frames.
class EventStream final : public http::BodyStream {
 public:
  EventStream(store::EventFeed& feed, EventsQuery query, std::shared_ptr<std::atomic<std::size_t>> open)
      : feed_(feed), query_(std::move(query)), open_(std::move(open)) {}
  ~EventStream() override {
    if (sub_) sub_->cancel();
    if (open_) open_->fetch_sub(1);
  }

  void start(std::function<void()> wake) override {
    sub_ = feed_.subscribe(query_.filter, query_.after, std::move(wake));
  }

  bool pull(std::string& out) override {
    if (!greeted_) {
      // Tells the client (and any proxy) the stream is up before the first event.
      out += ": phonefarm-agent events\nretry: 2000\n\n";
      greeted_ = true;
    }
    store::EventDelivery d = sub_->take();
    if (d.reset_oldest) {
      out += "id: " + std::to_string(*d.reset_oldest - 1) +
             "\nevent: reset\ndata: {\"oldest\":" + std::to_string(*d.reset_oldest) + "}\n\n";
    }
    for (const auto& e : d.events) {
      out += "id: ";
      out += std::to_string(e->event.seq);
      out += "\nevent: ";
      out += e->event.kind;
      out += "\ndata: ";
      out += e->json;
      out += "\n\n";
    }
    if (d.overflow_after) {
      out += "id: " + std::to_string(*d.overflow_after) +
             "\nevent: overflow\ndata: {\"after\":" + std::to_string(*d.overflow_after) + "}\n\n";
      return false;
    }
    return true;
  }

  void stop() override {
    if (sub_) sub_->cancel();
  }

 private:
  store::EventFeed& feed_;
  EventsQuery query_;
  std::shared_ptr<std::atomic<std::size_t>> open_;
  std::shared_ptr<store::EventSubscription> sub_;
  bool greeted_ = false;
};

std::string pageJson(const store::EventDelivery& d) {
  std::string body = "{\"events\":[";
  bool first = true;
  for (const auto& e : d.events) {
    if (!first) body += ',';
    first = false;
    body += e->json;
  }
  body += "],\"next\":" + std::to_string(d.cursor);
  if (d.reset_oldest) body += ",\"reset\":{\"oldest\":" + std::to_string(*d.reset_oldest) + "}";
  body += '}';
  return body;
}

// A long poll in flight: answered once, by the first wake that has events
// (or a reset), or by the deadline.
struct LongPoll {
  ApiHandler::CallPtr call;
  std::shared_ptr<store::EventSubscription> sub;
  bool answered = false;  // I/O thread
};

}  // namespace

void ApiHandler::getEvents(const CallPtr& call) {
  if (s_.events == nullptr) return call->reply(detailResponse(503, "The event log is not available"));
  auto parsed = parseEventsQuery(call->query, call->request.last_event_id);
  if (auto* errors = std::get_if<FieldErrors>(&parsed)) return call->reply(validationResponse(*errors));
  EventsQuery q = std::get<EventsQuery>(std::move(parsed));

  if (wantsEventStream(call->request.accept)) {
    // Reserve a slot first: two requests racing for the last one cannot both win.
    if (event_streams_->fetch_add(1) >= s_.config.http.max_event_streams) {
      event_streams_->fetch_sub(1);
      http::HttpResponse busy = detailResponse(503, "Too many event streams (http.max_event_streams)");
      busy.headers.emplace_back("Retry-After", "5");
      return call->reply(std::move(busy));
    }
    http::HttpResponse response;
    response.content_type = "text/event-stream; charset=utf-8";
    response.headers.emplace_back("Cache-Control", "no-store");
    response.headers.emplace_back("X-Accel-Buffering", "no");
    http::StreamingBody body;
    body.source = std::make_shared<EventStream>(*s_.events, std::move(q), event_streams_);
    body.heartbeat_interval = kHeartbeat;
    body.heartbeat = ": heartbeat\n\n";
    response.stream = std::move(body);
    return call->reply(std::move(response));
  }

  // Long poll. Without ?after=, like a stream, from now on: `next` says where
  // now is (wait=0 answers at once with it).
  auto poll = std::make_shared<LongPoll>();
  poll->call = call;
  auto answer = [poll] {
    if (poll->answered) return;
    store::EventDelivery d = poll->sub->take();
    if (d.events.empty() && !d.reset_oldest && !d.expired) return;  // woken early; more is coming
    poll->answered = true;
    poll->sub->cancel();
    http::HttpResponse response;
    response.body = pageJson(d);
    response.headers.emplace_back("Cache-Control", "no-store");
    poll->call->reply(std::move(response));
    poll->sub.reset();  // breaks the cycle poll -> sub -> wake -> poll
  };
  poll->sub = s_.events->subscribe(
      std::move(q.filter), q.after, [this, answer] { onIo(answer); }, static_cast<std::size_t>(q.limit),
      /*overflow_when_full=*/false, std::chrono::seconds(q.wait));
}

}  // namespace phonefarm::api
