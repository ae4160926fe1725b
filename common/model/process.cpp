// Enum names of the model, as they appear in the API and the store.
#include "common/model/process.hpp"

#include <array>

namespace phonefarm {
namespace {

template <class E, std::size_t N>
std::optional<E> lookup(const std::array<std::string_view, N>& names, std::string_view s) {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == s) return static_cast<E>(i);
  }
  return std::nullopt;
}

constexpr std::array<std::string_view, 6> kProcessStatus{"queued",    "running", "cancelling",
                                                         "succeeded", "failed",  "cancelled"};
constexpr std::array<std::string_view, 6> kItemStatus{"pending", "executing", "succeeded",
                                                      "failed",  "cancelled", "skipped"};
constexpr std::array<std::string_view, 3> kStrategy{"soft", "hard", "soft_then_force"};

}  // namespace

std::string_view toString(ProcessStatus s) { return kProcessStatus[static_cast<std::size_t>(s)]; }
std::string_view toString(ItemStatus s) { return kItemStatus[static_cast<std::size_t>(s)]; }
std::string_view toString(CancelStrategy s) { return kStrategy[static_cast<std::size_t>(s)]; }
std::optional<ProcessStatus> parseProcessStatus(std::string_view s) { return lookup<ProcessStatus>(kProcessStatus, s); }
std::optional<ItemStatus> parseItemStatus(std::string_view s) { return lookup<ItemStatus>(kItemStatus, s); }
std::optional<CancelStrategy> parseCancelStrategy(std::string_view s) { return lookup<CancelStrategy>(kStrategy, s); }

bool isTerminal(ProcessStatus s) {
  return s == ProcessStatus::kSucceeded || s == ProcessStatus::kFailed || s == ProcessStatus::kCancelled;
}

bool isTerminal(ItemStatus s) { return s != ItemStatus::kPending && s != ItemStatus::kExecuting; }

const QueueItem* Process::executingItem() const {
  for (const auto& item : items) {
    if (item.status == ItemStatus::kExecuting) return &item;
  }
  return nullptr;
}

}  // namespace phonefarm
