// The agent's state_dir/agent.lock after a crash. The killed agent's flock
// lasts while any process still has that open file (about once in 30 crashes
// a child the agent had just cloned, before its exec closes the descriptor,
// held it for a few milliseconds), and a restart meanwhile refuses to start
// ("another phonefarm-agent is running"; systemd would retry it). Tests that
// restart at once wait for the lock with these.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>

namespace phonefarm::testing {

// Whether nobody holds the lock (a non-blocking flock of our own succeeds).
bool stateDirLockIsFree(const std::filesystem::path& lock);

// " pid (exe)" for each process with a descriptor of `lock` open, or
// " nobody any more".
std::string stateDirLockHolders(const std::filesystem::path& lock);

// Waits until the lock is free or `timeout` passed; true when free.
// `on_first_wait` runs once if the lock was held at the first look.
bool waitForStateDirLock(const std::filesystem::path& lock, std::chrono::milliseconds timeout,
                         const std::function<void()>& on_first_wait = {});

}  // namespace phonefarm::testing
