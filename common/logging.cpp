// spdlog configuration for the daemon and the tools.
#include "common/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "common/os/thread_name.hpp"

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

// Writes formatted lines to stdio's stderr without flushing each one (the
// stock console sinks fflush per line: a write(2) per line, two per request).
// Flushed by spdlog's periodic flusher and at warn level and above.
class BufferedStderrSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    std::fwrite(formatted.data(), 1, formatted.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

}  // namespace

void setupLogging(std::string_view level) {
  auto logger = std::make_shared<spdlog::logger>("phonefarm", std::make_shared<BufferedStderrSink>());
  std::unique_ptr<spdlog::pattern_formatter> formatter;
  if (std::getenv("JOURNAL_STREAM") != nullptr) {
    formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JournalPriorityFlag>('*').set_pattern("%*%v");
  } else {
    formatter =
        std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  }
  logger->set_formatter(std::move(formatter));
  logger->set_level(spdlog::level::from_str(std::string(level)));
  // stderr is unbuffered by default: one write(2) per line, two per request.
  // Buffer it and flush every second (warnings and errors at once), so
  // logging does not cost throughput; lines reach the journal in order.
  static char buffer[1 << 16];
  std::setvbuf(stderr, buffer, _IOFBF, sizeof buffer);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  // spdlog's flusher thread cannot name itself; it takes the name its
  // creator has at that moment.
  const std::string name = os::currentThreadName();
  os::setCurrentThreadName("pf-log-flush");
  spdlog::flush_every(std::chrono::seconds(1));
  os::setCurrentThreadName(name);
}

}  // namespace phonefarm
