// startAdbServer: launches the adb server (`adb start-server`) when nothing
// listens on its port — what the DeviceTracker does before it subscribes —
// and adbBinaryVersion: which adb server version the agent's own adb would
// run (`adb version`, which asks no server), to tell a server of another
// version on the port.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/phone/adb_host.hpp"
#include "common/result.hpp"

namespace phonefarm::phone {

// Runs `adb_path -P <port> start-server` (posix_spawn, no shell, no PATH
// search) and waits for it to exit, which adb does once its server answers.
// The child gets the agent's environment plus `env_overrides` ("K=V", replacing
// any inherited K; e.g. HOME, where adb keeps its key pair), /dev/null as
// stdin, default signal state, a new session and no other descriptor (the
// server it forks lives on; it must not hold the agent's sockets). Bounded by
// `timeout` (the child is killed past it). A non-zero exit or a timeout is
// kUnavailable with the child's output (capped) in the message; a missing
// binary kNotFound. If something else in the process reaps the child first
// (the daemon, as child subreaper, reaps zombies it does not supervise) its
// exit status is lost and this returns ok: callers confirm by connecting.
// Note the server adb forks is re-parented to the nearest subreaper — the
// agent, when it is one — which must then reap it when it exits.
Status startAdbServer(const std::string& adb_path, const AdbEndpoint& endpoint, std::chrono::milliseconds timeout,
                      const std::vector<std::string>& env_overrides = {});

// startAdbServer that also gives up (killing the child) when `wake_fd`
// turns readable: for the DeviceTracker, whose stop() must not wait for it.
Status startAdbServer(const std::string& adb_path, const AdbEndpoint& endpoint, std::chrono::milliseconds timeout,
                      const std::vector<std::string>& env_overrides, int wake_fd);

// `adb_path version` (same child set-up and bounds as startAdbServer): the
// version of that adb as host:version spells it, 4 lowercase hex digits
// ("0029" for "Android Debug Bridge version 1.0.41"). `adb version` contacts
// no server, so it is safe with a foreign server on the port. kUnavailable
// when adb fails or prints no version; kNotFound for a missing binary.
Result<std::string> adbBinaryVersion(const std::string& adb_path, std::chrono::milliseconds timeout,
                                     const std::vector<std::string>& env_overrides = {}, int wake_fd = -1);

// The "1.0.N" of `adb version`'s output as 4 hex digits; nullopt when absent
// or past 0xffff.
std::optional<std::string> parseAdbVersionOutput(std::string_view output);

}  // namespace phonefarm::phone
