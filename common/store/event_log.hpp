// EventLog: the durable event stream (GET /events). Every state change the
// repositories write appends one event row in the same transaction, so an
// event exists if and only if its change committed; the seq is the table's
// AUTOINCREMENT key, and the store is the only writer, so seqs commit in
// increasing order with no gap a later commit could fill. Appends run inside
// a Store job; the reads also run on the EventFeed's own connection.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.hpp"
#include "common/store/sqlite_db.hpp"

namespace phonefarm::store {

// The kinds, as docs/api.md lists them.
namespace event_kind {
inline constexpr std::string_view kProcessSubmitted = "process.submitted";
inline constexpr std::string_view kProcessStatus = "process.status";
inline constexpr std::string_view kItemStarted = "item.started";
inline constexpr std::string_view kItemEnded = "item.ended";
inline constexpr std::string_view kCancelAccepted = "cancel.accepted";
inline constexpr std::string_view kTerminationIssued = "termination.issued";
inline constexpr std::string_view kTerminationEscalated = "termination.escalated";
inline constexpr std::string_view kPhoneState = "phone.state";
inline constexpr std::string_view kPhoneHealth = "phone.health";
inline constexpr std::string_view kResetStep = "reset.step";
inline constexpr std::string_view kResetEnded = "reset.ended";
// Self-healing: a ladder starting, a heal action recorded without a ladder
// (probe failure, quarantine, unauthorized, hub event), a phone's attention.
inline constexpr std::string_view kResetStarted = "reset.started";
inline constexpr std::string_view kResetRecorded = "reset.recorded";
inline constexpr std::string_view kPhoneAttention = "phone.attention";
}  // namespace event_kind

bool isEventKind(std::string_view kind);

// The ids an event concerns (absent = not about one).
struct EventIds {
  std::optional<std::string> process_id;
  std::optional<std::string> queue_item_id;
  std::optional<std::string> phone_id;
  std::optional<std::string> reset_id;
};

struct Event {
  std::int64_t seq = 0;
  WallMs time = 0;
  std::string kind;
  EventIds ids;
  std::string payload;  // a compact JSON object
};

// docs/api.md's JSON of one event: {"seq","time","kind", ids..., "payload"}.
std::string eventJson(const Event& e);

struct EventFilter {
  std::optional<std::string> process_id;
  std::optional<std::string> phone_id;
  std::vector<std::string> kinds;  // empty = every kind
  bool matches(const Event& e) const;
};

struct EventPage {
  std::vector<Event> events;    // matching, in seq order
  std::int64_t scanned_to = 0;  // the last seq examined (matching or not); the next read starts after it
};

class EventLog {
 public:
  explicit EventLog(Db& db) : db_(db) {}

  void append(std::string_view kind, const EventIds& ids, const boost::json::object& payload, WallMs time);

  // Events with after < seq <= upto that match, examining at most `scan` rows
  // and returning at most `limit`.
  EventPage readAfter(std::int64_t after, std::int64_t upto, const EventFilter& filter, std::size_t limit,
                      std::size_t scan);
  // The oldest seq still kept; nullopt when the log is empty.
  std::optional<std::int64_t> oldestSeq();
  // The last seq ever appended (0 when none), even if retention deleted it.
  std::int64_t lastSeq();
  // Deletes at most `batch` of the oldest events that are older than
  // `cutoff` or beyond the newest `max_events`; returns how many.
  std::int64_t prune(WallMs cutoff, std::int64_t max_events, std::int64_t batch);

 private:
  Db& db_;
};

}  // namespace phonefarm::store
