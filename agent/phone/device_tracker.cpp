// DeviceTracker (see device_tracker.hpp). One loop on one thread: ask the
// server's version, subscribe, follow the stream, and on any break report it
// (once per outage), back off, start the server if nothing listens (replace
// it if it is foreign and that is allowed), and go round again. Every wait
// also watches an eventfd, which is how stop() gets the thread out.
#include "agent/phone/device_tracker.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <system_error>
#include <utility>

#include "agent/phone/adb_server_launcher.hpp"
#include "agent/phone/adb_text.hpp"
#include "common/os/thread_name.hpp"

namespace phonefarm::phone {
namespace {

constexpr std::string_view kTrackService = "host:track-devices-l";
constexpr std::size_t kMaxListBytes = 0xffff;
constexpr std::size_t kMaxVersionBytes = 64;
// How often the port is tried while a killed foreign server goes away.
constexpr std::chrono::milliseconds kPortClosePoll{50};

std::string endpointText(const AdbEndpoint& endpoint) { return endpoint.host + ":" + std::to_string(endpoint.port); }

bool isVersion(std::string_view text) {
  return text.size() == 4 && text.find_first_not_of("0123456789abcdefABCDEF") == std::string_view::npos;
}

// A zero back-off would never grow: retry at least every millisecond apart.
DeviceTrackerOptions normalized(DeviceTrackerOptions options) {
  options.min_backoff = std::max(options.min_backoff, std::chrono::milliseconds(1));
  options.max_backoff = std::max(options.max_backoff, options.min_backoff);
  return options;
}

}  // namespace

DeviceTracker::DeviceTracker(DeviceTrackerOptions options, std::function<void(std::vector<AdbDevice>)> on_update,
                             std::function<void(std::string)> on_lost)
    : options_(normalized(std::move(options))),
      on_update_(std::move(on_update)),
      on_lost_(std::move(on_lost)),
      where_(endpointText(options_.endpoint)) {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw std::system_error(errno, std::system_category(), "eventfd for the adb device tracker");
}

DeviceTracker::~DeviceTracker() {
  stop();
  ::close(wake_fd_);
}

void DeviceTracker::start() {
  std::lock_guard lock(lifecycle_mutex_);
  if (thread_.joinable()) return;
  std::uint64_t drained = 0;
  while (::read(wake_fd_, &drained, sizeof drained) > 0) {
  }
  stopping_.store(false, std::memory_order_release);
  thread_ = std::thread([this] {
    os::setCurrentThreadName("pf-adb-track");
    run();
  });
}

void DeviceTracker::stop() {
  std::lock_guard lock(lifecycle_mutex_);
  if (!thread_.joinable()) return;
  stopping_.store(true, std::memory_order_release);
  const std::uint64_t one = 1;
  while (::write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
  thread_.join();
}

const char* adbServerFaultName(AdbServerFault fault) {
  switch (fault) {
    case AdbServerFault::kForeignVersion:
      return "foreign_version";
    case AdbServerFault::kPortHog:
      return "port_hog";
    case AdbServerFault::kNone:
      break;
  }
  return "";
}

DeviceTrackerStats DeviceTracker::stats() const {
  std::lock_guard lock(stats_mutex_);
  return stats_;
}

AdbServerState DeviceTracker::serverState() const {
  std::lock_guard lock(stats_mutex_);
  return state_;
}

std::string DeviceTracker::expectedVersion() const {
  std::lock_guard lock(stats_mutex_);
  return state_.expected_version;
}

void DeviceTracker::learnExpectedVersion() {
  std::string version = options_.expected_version;
  if (version.empty() && !options_.adb_path.empty()) {
    auto asked = adbBinaryVersion(options_.adb_path, options_.server_start_timeout, options_.adb_env, wake_fd_);
    if (asked.ok()) {
      version = *asked;
      spdlog::info("adb.client.version adb={} version={}", options_.adb_path, version);
    } else if (!stopping()) {
      spdlog::warn(
          "adb.client.version_unknown adb={} error=\"{}\" the version of a server the agent starts is "
          "taken instead",
          options_.adb_path, asked.error().message);
    }
  }
  std::lock_guard lock(stats_mutex_);
  state_.expected_version = adb_text::printable(version);
}

DeviceTracker::ServerCheck DeviceTracker::checkServer(bool started_here) {
  const auto deadline = AdbDeadline::after(options_.io_timeout);
  bool refused = false;
  auto connection = AdbHostConnection::open(options_.endpoint, deadline, wake_fd_, &refused);
  if (!connection.ok()) return {refused ? Found::kRefused : Found::kUnreachable, "", connection.error().message};
  auto asked = connection->request("host:version", deadline);
  Result<std::string> version =
      asked.ok() ? connection->readLengthPrefixed(kMaxVersionBytes, deadline) : Result<std::string>(asked.error());
  if (!version.ok()) return {Found::kHog, "", "host:version: " + version.error().message};
  if (!isVersion(*version)) {
    return {Found::kHog, "", "host:version answered '" + adb_text::printable(*version) + "', not 4 hex digits"};
  }
  std::string answer = *version;
  std::transform(answer.begin(), answer.end(), answer.begin(), [](unsigned char c) { return std::tolower(c); });
  std::string expected;
  {
    std::lock_guard lock(stats_mutex_);
    if (state_.expected_version.empty() && started_here) {
      state_.expected_version = answer;
      spdlog::info("adb.client.version adb={} version={} source=started_server", options_.adb_path, answer);
    }
    expected = state_.expected_version;
  }
  // An unknown expectation cannot tell a foreign server: it is taken as ours.
  return {expected.empty() || answer == expected ? Found::kOurs : Found::kForeign, answer, ""};
}

Status DeviceTracker::startServer() {
  auto started =
      startAdbServer(options_.adb_path, options_.endpoint, options_.server_start_timeout, options_.adb_env, wake_fd_);
  if (stopping()) return started;
  std::lock_guard lock(stats_mutex_);
  if (started.ok()) {
    ++stats_.server_starts;
    spdlog::info("adb.server.started endpoint={} adb={}", where_, options_.adb_path);
  } else {
    ++stats_.server_start_failures;
    spdlog::error("adb.server.start_failed endpoint={} error=\"{}\"", where_, started.error().message);
  }
  return started;
}

Status DeviceTracker::replaceServer(const std::string& foreign_version) {
  spdlog::warn("adb.server.replacing endpoint={} server_version={} expected_version={}", where_, foreign_version,
               expectedVersion());
  const std::string what = "replacing the adb server of version " + foreign_version + " at " + where_;
  {
    // The server answers host:kill with OKAY and exits.
    const auto deadline = AdbDeadline::after(options_.io_timeout);
    auto connection = AdbHostConnection::open(options_.endpoint, deadline, wake_fd_);
    if (!connection.ok()) return adb_text::unavailable(what + ": " + connection.error().message);
    if (auto killed = connection->request("host:kill", deadline); !killed.ok()) {
      return adb_text::unavailable(what + ": host:kill: " + killed.error().message);
    }
  }
  // Its port must close before a server of ours can take it.
  const auto deadline = AdbDeadline::after(options_.server_start_timeout);
  for (;;) {
    bool refused = false;
    auto connection =
        AdbHostConnection::open(options_.endpoint, AdbDeadline::after(options_.io_timeout), wake_fd_, &refused);
    if (refused) break;
    if (stopping()) return adb_text::unavailable(what + ": interrupted");
    if (deadline.passed()) {
      return adb_text::unavailable(what + ": the port is still open " + std::to_string(deadline.budget.count()) +
                                   " ms after host:kill");
    }
    sleepFor(kPortClosePoll);
  }
  if (auto started = startServer(); !started.ok()) return adb_text::unavailable(what + ": " + started.error().message);
  return okStatus();
}

void DeviceTracker::noteServer(const ServerCheck& check, const std::string& replace_error) {
  std::lock_guard lock(stats_mutex_);
  const AdbServerState before = state_;
  if (!check.version.empty()) state_.server_version = check.version;
  switch (check.found) {
    case Found::kForeign:
      state_.fault = AdbServerFault::kForeignVersion;
      state_.detail =
          "the adb server at " + where_ + " is version " + check.version + ", the agent's adb (" + options_.adb_path +
          ") is " + state_.expected_version +
          (replace_error.empty() ? std::string(": left running (adb.replace_foreign_server = false); an adb client of "
                                               "the agent's version would kill it")
                                 : "; " + replace_error);
      break;
    case Found::kHog:
      state_.fault = AdbServerFault::kPortHog;
      state_.detail =
          "something that is not an adb server holds " + where_ + " (" + check.error + "); retrying with back-off";
      break;
    case Found::kOurs:
    case Found::kRefused:
    case Found::kUnreachable:
      state_.fault = AdbServerFault::kNone;
      state_.detail.clear();
      break;
  }
  if (state_.fault == AdbServerFault::kForeignVersion &&
      (before.fault != state_.fault || before.server_version != state_.server_version)) {
    spdlog::warn("adb.server.foreign_version endpoint={} server_version={} expected_version={} action={} detail=\"{}\"",
                 where_, state_.server_version, state_.expected_version,
                 options_.replace_foreign_server ? "replace_failed" : "left_running", state_.detail);
  } else if (state_.fault == AdbServerFault::kPortHog && before.fault != state_.fault) {
    spdlog::error("adb.server.port_hog endpoint={} error=\"{}\"", where_, check.error);
  } else if (state_.fault == AdbServerFault::kNone && before.fault != AdbServerFault::kNone) {
    spdlog::info("adb.server.fault_cleared endpoint={} was={} server_version={}", where_,
                 adbServerFaultName(before.fault), check.version.empty() ? "none" : check.version);
  }
}

void DeviceTracker::sleepFor(std::chrono::milliseconds delay) const {
  const auto deadline = AdbDeadline::after(delay);
  pollfd wake{wake_fd_, POLLIN, 0};
  while (!stopping()) {
    const int left_ms = deadline.pollTimeoutMs();
    if (left_ms <= 0) return;
    const int rc = ::poll(&wake, 1, std::min(left_ms, 60'000));
    if (rc > 0) return;
    if (rc < 0 && errno != EINTR) return;
  }
}

void DeviceTracker::run() {
  learnExpectedVersion();
  auto backoff = options_.min_backoff;
  bool outage_reported = false;
  while (!stopping()) {
    std::string reason;
    std::string replace_error;
    ServerCheck check = checkServer(false);
    if (stopping()) break;
    if (check.found == Found::kRefused && options_.start_server) {
      if (auto started = startServer(); started.ok()) {
        check = checkServer(true);
      } else {
        reason = check.error + "; " + started.error().message;
      }
    } else if (check.found == Found::kForeign && options_.replace_foreign_server) {
      const std::string foreign = check.version;
      if (auto replaced = replaceServer(foreign); replaced.ok()) {
        {
          std::lock_guard lock(stats_mutex_);
          ++stats_.server_replacements;
        }
        check = checkServer(true);
        spdlog::warn("adb.server.replaced endpoint={} old_version={} new_version={}", where_, foreign,
                     check.version.empty() ? "none" : check.version);
      } else {
        {
          std::lock_guard lock(stats_mutex_);
          ++stats_.server_replace_failures;
        }
        replace_error = replaced.error().message;
        spdlog::error("adb.server.replace_failed endpoint={} error=\"{}\"", where_, replace_error);
      }
    }
    if (stopping()) break;
    noteServer(check, replace_error);
    if (check.found == Found::kOurs || check.found == Found::kForeign) {
      auto connection =
          AdbHostConnection::open(options_.endpoint, AdbDeadline::after(options_.io_timeout), wake_fd_, nullptr);
      if (!connection.ok()) {
        reason = connection.error().message;
      } else if (auto subscribed = connection->request(kTrackService, AdbDeadline::after(options_.io_timeout));
                 subscribed.ok()) {
        {
          std::lock_guard lock(stats_mutex_);
          ++stats_.subscriptions;
        }
        spdlog::info("adb.track.subscribed endpoint={} server_version={}", where_, check.version);
        outage_reported = false;
        reason = follow(*connection, backoff);
      } else {
        reason = std::string(kTrackService) + ": " + subscribed.error().message;
      }
    } else if (reason.empty()) {
      reason = check.found == Found::kHog ? serverState().detail : check.error;
    }
    if (stopping()) break;
    if (!outage_reported) {
      outage_reported = true;
      {
        std::lock_guard lock(stats_mutex_);
        ++stats_.disconnects;
      }
      spdlog::warn("adb.track.lost endpoint={} reason=\"{}\" retry_in_ms={}", where_, reason, backoff.count());
      if (on_lost_) on_lost_(reason);
    } else {
      spdlog::debug("adb.track.retry_failed endpoint={} reason=\"{}\" retry_in_ms={}", where_, reason, backoff.count());
    }
    sleepFor(backoff);
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

std::string DeviceTracker::follow(AdbHostConnection& connection, std::chrono::milliseconds& backoff) {
  for (;;) {
    // Idle between lists for as long as nothing changes; once a list starts
    // it must arrive whole within io_timeout.
    if (auto readable = connection.waitReadable(AdbDeadline::never()); !readable.ok()) {
      return readable.error().message;
    }
    auto list = connection.readLengthPrefixed(kMaxListBytes, AdbDeadline::after(options_.io_timeout));
    if (!list.ok()) return list.error().message;
    auto devices = parseDeviceList(*list);
    {
      std::lock_guard lock(stats_mutex_);
      ++stats_.updates;
    }
    spdlog::debug("adb.track.update endpoint={} devices={}", where_, devices.size());
    backoff = options_.min_backoff;  // a working stream: the next outage starts from the shortest wait
    if (on_update_) on_update_(std::move(devices));
    if (stopping()) return "stopped";
  }
}

}  // namespace phonefarm::phone
