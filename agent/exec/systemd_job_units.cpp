// The job units over D-Bus (see the header): sd-bus calls to systemd's
// Manager, and the wait for a start job's JobRemoved signal with a deadline.
#include "agent/exec/systemd_job_units.hpp"

#include <systemd/sd-bus.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace phonefarm::exec {
namespace {

constexpr const char* kDestination = "org.freedesktop.systemd1";
constexpr const char* kManagerPath = "/org/freedesktop/systemd1";
constexpr const char* kManager = "org.freedesktop.systemd1.Manager";
constexpr const char* kService = "org.freedesktop.systemd1.Service";
constexpr std::size_t kMaxInstanceLength = 64;

// sd_bus_error freed on every path.
struct BusError {
  sd_bus_error error{};  // SD_BUS_ERROR_NULL, without its C compound literal
  BusError() = default;
  BusError(const BusError&) = delete;
  BusError& operator=(const BusError&) = delete;
  ~BusError() { sd_bus_error_free(&error); }
};

Error busFailure(const std::string& what, int r, const sd_bus_error& e) {
  std::string why;
  if (sd_bus_error_is_set(&e) != 0) {
    why = std::string(e.name) + (e.message != nullptr ? std::string(": ") + e.message : std::string());
  } else {
    why = std::strerror(-r);
  }
  // Refused by polkit: the package's rule is missing or does not match.
  const bool denied = sd_bus_error_has_name(&e, SD_BUS_ERROR_ACCESS_DENIED) != 0 ||
                      sd_bus_error_has_name(&e, "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired") != 0;
  return makeError(denied ? ErrorKind::kInvalid : ErrorKind::kUnavailable, what + ": " + why);
}

// The start job we wait for, filled in by the JobRemoved handler.
struct StartJob {
  std::string path;
  std::string result;
  bool removed = false;
};

int onJobRemoved(sd_bus_message* m, void* userdata, sd_bus_error* /*error*/) {
  auto* job = static_cast<StartJob*>(userdata);
  std::uint32_t id = 0;
  const char* path = nullptr;
  const char* unit = nullptr;
  const char* result = nullptr;
  if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0) return 0;
  if (!job->path.empty() && job->path == path) {
    job->result = result;
    job->removed = true;
  }
  return 0;
}

class SystemBusJobUnits final : public JobUnits {
 public:
  SystemBusJobUnits() = default;
  SystemBusJobUnits(const SystemBusJobUnits&) = delete;
  SystemBusJobUnits& operator=(const SystemBusJobUnits&) = delete;
  ~SystemBusJobUnits() override { sd_bus_flush_close_unref(bus_); }

  Result<JobUnitStarted> start(const std::string& unit, std::chrono::milliseconds timeout) override {
    auto bus = connect();
    if (!bus) return bus.error();
    StartJob job;
    sd_bus_slot* slot = nullptr;
    int r = sd_bus_match_signal(*bus, &slot, kDestination, kManagerPath, kManager, "JobRemoved", onJobRemoved, &job);
    if (r < 0) return fail("watching systemd's JobRemoved", r, nullptr);
    auto result = startAndWait(*bus, unit, timeout, job);
    sd_bus_slot_unref(slot);
    return result;
  }

  Status kill(const std::string& unit, int sig) override {
    auto bus = connect();
    if (!bus) return bus.error();
    BusError e;
    const int r = sd_bus_call_method(*bus, kDestination, kManagerPath, kManager, "KillUnit", &e.error, nullptr, "ssi",
                                     unit.c_str(), "all", sig);
    if (r < 0) return fail("KillUnit " + unit, r, &e.error);
    return okStatus();
  }

 private:
  Result<sd_bus*> connect() {
    if (bus_ != nullptr && sd_bus_is_open(bus_) > 0) return bus_;
    bus_ = sd_bus_flush_close_unref(bus_);
    subscribed_ = false;
    sd_bus* bus = nullptr;
    const int r = sd_bus_open_system(&bus);
    if (r < 0)
      return makeError(ErrorKind::kUnavailable, std::string("connecting to the system bus: ") + std::strerror(-r));
    bus_ = bus;
    return bus_;
  }

  // Drops the connection after a transport error, so the next call reconnects.
  Error fail(const std::string& what, int r, const sd_bus_error* e) {
    const sd_bus_error none{};
    Error error = busFailure(what, r, e != nullptr ? *e : none);
    if (e == nullptr || sd_bus_error_is_set(e) == 0) bus_ = sd_bus_flush_close_unref(bus_);
    return error;
  }

  Result<JobUnitStarted> startAndWait(sd_bus* bus, const std::string& unit, std::chrono::milliseconds timeout,
                                      StartJob& job) {
    // systemd sends JobRemoved only to subscribed clients.
    if (!subscribed_) {
      BusError e;
      const int r = sd_bus_call_method(bus, kDestination, kManagerPath, kManager, "Subscribe", &e.error, nullptr, "");
      if (r < 0) return fail("Subscribe to systemd", r, &e.error);
      subscribed_ = true;
    }
    {
      BusError e;
      sd_bus_message* reply = nullptr;
      int r = sd_bus_call_method(bus, kDestination, kManagerPath, kManager, "StartUnit", &e.error, &reply, "ss",
                                 unit.c_str(), "fail");
      if (r < 0) return fail("StartUnit " + unit, r, &e.error);
      const char* path = nullptr;
      r = sd_bus_message_read(reply, "o", &path);
      if (r >= 0) job.path = path;
      sd_bus_message_unref(reply);
      if (r < 0) return fail("reading StartUnit's reply", r, nullptr);
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!job.removed) {
      const int r = sd_bus_process(bus, nullptr);
      if (r < 0) return fail("waiting for the start job of " + unit, r, nullptr);
      if (r > 0) continue;
      const auto left =
          std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return makeError(ErrorKind::kUnavailable,
                         "the start job of " + unit + " did not end within " + std::to_string(timeout.count()) + " ms");
      }
      const int w = sd_bus_wait(bus, static_cast<std::uint64_t>(left.count()));
      if (w < 0 && w != -EINTR) return fail("waiting for the start job of " + unit, w, nullptr);
    }
    if (job.result != "done") {
      return makeError(ErrorKind::kUnavailable, "the start job of " + unit + " ended with result '" + job.result +
                                                    "' (journalctl -u " + unit + ")");
    }
    return properties(bus, unit);
  }

  Result<JobUnitStarted> properties(sd_bus* bus, const std::string& unit) {
    char* path = nullptr;
    if (const int r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", unit.c_str(), &path); r < 0) {
      return fail("encoding the object path of " + unit, r, nullptr);
    }
    const std::string object(path);
    std::free(path);  // NOLINT(cppcoreguidelines-no-malloc): sd-bus allocates it with malloc
    JobUnitStarted started;
    BusError e;
    std::uint32_t pid = 0;
    int r = sd_bus_get_property_trivial(bus, kDestination, object.c_str(), kService, "MainPID", &e.error, 'u', &pid);
    if (r < 0) return fail("MainPID of " + unit, r, &e.error);
    started.main_pid = static_cast<pid_t>(pid);
    char* cgroup = nullptr;
    r = sd_bus_get_property_string(bus, kDestination, object.c_str(), kService, "ControlGroup", &e.error, &cgroup);
    if (r < 0) return fail("ControlGroup of " + unit, r, &e.error);
    started.control_group = cgroup != nullptr ? cgroup : "";
    std::free(cgroup);  // NOLINT(cppcoreguidelines-no-malloc): sd-bus allocates it with malloc
    return started;
  }

  sd_bus* bus_ = nullptr;
  bool subscribed_ = false;
};

}  // namespace

bool isValidJobUnitInstance(std::string_view execution_id) {
  if (execution_id.empty() || execution_id.size() > kMaxInstanceLength) return false;
  for (const char c : execution_id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<std::string> jobUnitName(std::string_view execution_id) {
  if (!isValidJobUnitInstance(execution_id)) {
    return makeError(ErrorKind::kInvalid, "execution id is not a valid job unit instance ([A-Za-z0-9_-]{1,64})");
  }
  return std::string(kJobUnitPrefix).append(execution_id).append(kJobUnitSuffix);
}

std::string jobUnitCgroup(std::string_view unit) {
  return std::string("/system.slice/system-phonefarm\\x2djob.slice/").append(unit);
}

std::unique_ptr<JobUnits> makeSystemBusJobUnits() { return std::make_unique<SystemBusJobUnits>(); }

}  // namespace phonefarm::exec
