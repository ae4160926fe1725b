// spdlog configuration for the daemon and the tools.
#include "common/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

namespace phonefarm {
namespace {

// `%*` -> the journald priority prefix for the message's level.
class JournalPriorityFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    static constexpr const char* kPrefix[] = {"<7>", "<7>", "<6>", "<4>", "<3>", "<2>", "<6>"};
    const auto level = static_cast<std::size_t>(msg.level);
    const char* p = kPrefix[level < 7 ? level : 6];
    dest.append(p, p + 3);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JournalPriorityFlag>(); }
};

}  // namespace

void setupLogging(std::string_view level) {
  auto logger = std::make_shared<spdlog::logger>("phonefarm", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  std::unique_ptr<spdlog::pattern_formatter> formatter;
  if (std::getenv("JOURNAL_STREAM") != nullptr) {
    formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JournalPriorityFlag>('*').set_pattern("%*%v");
  } else {
    formatter = std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%eZ %l %v",
                                                            spdlog::pattern_time_type::utc);
  }
  logger->set_formatter(std::move(formatter));
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace phonefarm
