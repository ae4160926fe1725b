// DeviceTracker (see device_tracker.hpp). One loop on one thread: connect,
// subscribe, follow the stream, and on any break report it (once per outage),
// back off, start the server if nothing listens, and go round again. Every
// wait also watches an eventfd, which is how stop() gets the thread out.
#include "agent/phone/device_tracker.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <system_error>
#include <utility>

#include "agent/phone/adb_server_launcher.hpp"
#include "common/os/thread_name.hpp"

namespace phonefarm::phone {
namespace {

constexpr std::string_view kTrackService = "host:track-devices-l";
constexpr std::size_t kMaxListBytes = 0xffff;

std::string endpointText(const AdbEndpoint& endpoint) { return endpoint.host + ":" + std::to_string(endpoint.port); }

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

DeviceTrackerStats DeviceTracker::stats() const {
  std::lock_guard lock(stats_mutex_);
  return stats_;
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
  auto backoff = options_.min_backoff;
  bool outage_reported = false;
  while (!stopping()) {
    std::string reason;
    bool refused = false;
    auto connection =
        AdbHostConnection::open(options_.endpoint, AdbDeadline::after(options_.io_timeout), wake_fd_, &refused);
    if (!connection.ok() && refused && options_.start_server && !stopping()) {
      auto started = startAdbServer(options_.adb_path, options_.endpoint, options_.server_start_timeout,
                                    options_.adb_env, wake_fd_);
      if (stopping()) break;
      if (started.ok()) {
        {
          std::lock_guard lock(stats_mutex_);
          ++stats_.server_starts;
        }
        spdlog::info("adb.server.started endpoint={} adb={}", where_, options_.adb_path);
        connection =
            AdbHostConnection::open(options_.endpoint, AdbDeadline::after(options_.io_timeout), wake_fd_, &refused);
      } else {
        {
          std::lock_guard lock(stats_mutex_);
          ++stats_.server_start_failures;
        }
        spdlog::error("adb.server.start_failed endpoint={} error=\"{}\"", where_, started.error().message);
        reason = connection.error().message + "; " + started.error().message;
      }
    }
    if (connection.ok()) {
      if (auto subscribed = connection->request(kTrackService, AdbDeadline::after(options_.io_timeout));
          subscribed.ok()) {
        {
          std::lock_guard lock(stats_mutex_);
          ++stats_.subscriptions;
        }
        spdlog::info("adb.track.subscribed endpoint={}", where_);
        outage_reported = false;
        reason = follow(*connection, backoff);
      } else {
        reason = std::string(kTrackService) + ": " + subscribed.error().message;
      }
    } else if (reason.empty()) {
      reason = connection.error().message;
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
