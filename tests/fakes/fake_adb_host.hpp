// FakeAdbHost: an AdbHost whose answers the test sets and whose calls it
// reads back, for the phone classes' unit tests (reset ladder, reconciler,
// /debug probe). Thread-safe: the classes call it from worker threads.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "agent/phone/adb_host.hpp"

namespace phonefarm::phone {

class FakeAdbHost final : public AdbHost {
 public:
  const AdbEndpoint& endpoint() const override { return endpoint_; }

  Result<std::string> version(std::chrono::milliseconds) const override {
    return record("version", "", version_result);
  }
  Result<std::vector<AdbDevice>> devices(std::chrono::milliseconds) const override {
    std::lock_guard lock(mutex_);
    calls_.push_back("devices");
    return devices_result;
  }
  Result<std::string> connect(std::string_view host_port, std::chrono::milliseconds) const override {
    return record("connect", host_port, connect_result);
  }
  Result<std::string> disconnect(std::string_view host_port, std::chrono::milliseconds) const override {
    return record("disconnect", host_port, disconnect_result);
  }
  Status reconnect(std::string_view serial, std::chrono::milliseconds) const override {
    std::function<void()> hook;
    Status result = okStatus();
    {
      std::lock_guard lock(mutex_);
      calls_.push_back("reconnect " + std::string(serial));
      hook = on_reconnect;
      result = reconnect_result;
    }
    if (hook) hook();
    return result;
  }

  Result<std::string> shell(std::string_view serial, std::string_view command, std::chrono::milliseconds,
                            std::size_t) const override {
    return record("shell", std::string(serial) + " " + std::string(command), shell_result);
  }

  // Every call so far: "devices", "reconnect SERIAL", "connect HOST:PORT", ...
  std::vector<std::string> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }

  // The answers; set them before the code under test runs.
  AdbEndpoint endpoint_{"127.0.0.1", 5037};
  Result<std::string> version_result = std::string("0029");
  Result<std::vector<AdbDevice>> devices_result = std::vector<AdbDevice>{};
  Result<std::string> connect_result = std::string("connected");
  Result<std::string> disconnect_result = std::string("disconnected");
  Status reconnect_result = okStatus();
  Result<std::string> shell_result = std::string("phonefarm-probe\n");
  std::function<void()> on_reconnect;  // e.g. the phone comes back

 private:
  Result<std::string> record(std::string_view op, std::string_view arg, const Result<std::string>& result) const {
    std::lock_guard lock(mutex_);
    calls_.push_back(arg.empty() ? std::string(op) : std::string(op) + " " + std::string(arg));
    return result;
  }

  mutable std::mutex mutex_;
  mutable std::vector<std::string> calls_;
};

}  // namespace phonefarm::phone
