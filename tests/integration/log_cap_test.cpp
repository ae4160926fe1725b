// [work] log_max_bytes against the real agent running real work as `nobody`:
// a job that writes far past a small cap on both streams, as fast as it can,
// is never blocked or killed for it; stdout.log and stderr.log keep the cap
// and end with the truncation marker, the item's note and
// phonefarm_log_bytes_dropped_total say how much was dropped, and the logs
// endpoint serves the capped log. Also across an agent restart while the job
// runs (the shim, which caps, outlives the agent).
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "tests/integration/work_fixture.hpp"

namespace phonefarm::testing {
namespace {

namespace json = boost::json;

constexpr std::uint64_t kCap = 64 * 1024;

// The line a capped log ends with, as README "Disk and retention" shows it.
std::string marker(const std::string& stream) {
  return "\n[phonefarm-agent: " + stream + " truncated at 64 KiB (work.log_max_bytes); the rest is dropped]\n";
}

class LogCap : public WorkFixture {
 protected:
  std::string workConfig() const override {
    std::string config = WorkFixture::workConfig();
    config.insert(std::string("[work]\n").size(), "log_max_bytes = \"64K\"\n");
    return config;
  }

  std::string out(const std::string& name) const { return (outDir() / name).string(); }

  // The value of one series of /metrics ("name{labels}"), or -1.
  double metric(const std::string& series) {
    const std::string text = call("GET", "/metrics", "", kReadToken).body;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    return -1;
  }

  std::string readControlFile(const std::string& execution_id, const std::string& name) {
    std::ifstream in(dir_.path() / "state" / "executions" / execution_id / name, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  static std::string noteOf(const json::object& process) {
    const auto& note = process.at("queue_items").at(0).at("note");
    return note.is_string() ? std::string(note.as_string()) : std::string();
  }
};

TEST_F(LogCap, AJobWritingFarPastTheCapIsNeverBlockedAndItsLogsEndAtTheCapWithTheMarker) {
  // 256 MiB from /dev/zero comes faster than any disk takes it; the job
  // records how long its writes took and ends normally.
  const std::string job = writeJob("flood.sh",
                                   "#!/bin/sh\n"
                                   "start=$(date +%s%N)\n"
                                   "echo 'first line'\n"
                                   "head -c 256M /dev/zero\n"
                                   "echo 'first error' >&2\n"
                                   "head -c 3000000 /dev/zero >&2\n"
                                   "echo $(( $(date +%s%N) - start )) > \"$1.ns\"\n"
                                   "exit 0\n");
  const std::uint64_t stdout_total = 11 + (256ULL << 20);
  const std::uint64_t stderr_total = 12 + 3000000;
  submitWork("flood", {{job, out("flood")}});
  auto p = waitForStatus("flood", "succeeded", std::chrono::seconds(60));
  const auto& item = p.at("queue_items").at(0).as_object();
  EXPECT_EQ(item.at("exit_code"), 0) << json::serialize(p);
  EXPECT_TRUE(item.at("signal").is_null()) << json::serialize(p);
  const std::uint64_t job_ms = std::stoull(waitForLine(outDir() / "flood.ns")) / 1'000'000;
  EXPECT_LT(job_ms, 30'000u) << "the job's writes were held up";

  // The note names both streams and the bytes each dropped.
  const std::string note = noteOf(p);
  EXPECT_NE(note.find("stdout truncated at 64 KiB: " + std::to_string(stdout_total - kCap) + " bytes dropped"),
            std::string::npos)
      << note;
  EXPECT_NE(note.find("stderr truncated at 64 KiB: " + std::to_string(stderr_total - kCap) + " bytes dropped"),
            std::string::npos)
      << note;

  // The logs on disk: the first kCap bytes as written, then the marker.
  auto head = call("GET", "/processes/flood/items/flood-q0/logs", "", kReadToken);
  ASSERT_EQ(head.status, 200) << head.body;
  const std::string execution_id = head.header("x-phonefarm-execution-id");
  ASSERT_FALSE(execution_id.empty());
  for (const auto& [name, first_line] :
       {std::pair{"stdout", std::string("first line\n")}, std::pair{"stderr", std::string("first error\n")}}) {
    const std::string log = readControlFile(execution_id, std::string(name) + ".log");
    const std::string end = marker(name);
    ASSERT_EQ(log.size(), kCap + end.size()) << name;
    EXPECT_EQ(log.substr(0, first_line.size()), first_line) << name;
    EXPECT_EQ(log.substr(first_line.size(), kCap - first_line.size()), std::string(kCap - first_line.size(), '\0'))
        << name;
    EXPECT_EQ(log.substr(kCap), end) << name;

    // The endpoint serves the same capped log, and says it is all there is.
    auto served = call("GET", "/processes/flood/items/flood-q0/logs?stream=" + std::string(name), "", kReadToken);
    ASSERT_EQ(served.status, 200) << served.body;
    EXPECT_EQ(served.body, log) << name;
    EXPECT_EQ(served.header("x-phonefarm-log-size"), std::to_string(log.size())) << name;
    EXPECT_EQ(served.header("x-phonefarm-more"), "false") << name;
  }

  EXPECT_EQ(metric("phonefarm_log_bytes_dropped_total{stream=\"stdout\"}"), static_cast<double>(stdout_total - kCap));
  EXPECT_EQ(metric("phonefarm_log_bytes_dropped_total{stream=\"stderr\"}"), static_cast<double>(stderr_total - kCap));
}

TEST_F(LogCap, TheCapHoldsAndIsNotedForWorkThatOutlivesAnAgentRestart) {
  const auto go = outDir() / "late.go";
  const std::string job = writeJob("late.sh",
                                   "#!/bin/sh\n"
                                   "echo started > \"$1.started\"\n"
                                   "while [ ! -e \"$1.go\" ]; do sleep 0.05; done\n"
                                   "head -c 1000000 /dev/zero\n");
  submitWork("late", {{job, out("late")}});
  waitForLine(outDir() / "late.started");
  restartAgent(SIGTERM);  // work.on_shutdown = "keep": the shim relays on meanwhile
  writeFile(go, "", 0644);

  auto p = waitForStatus("late", "succeeded");
  EXPECT_NE(noteOf(p).find("stdout truncated at 64 KiB: " + std::to_string(1000000 - kCap) + " bytes dropped"),
            std::string::npos)
      << json::serialize(p);
  auto served = call("GET", "/processes/late/items/late-q0/logs", "", kReadToken);
  ASSERT_EQ(served.status, 200);
  EXPECT_EQ(served.body.size(), kCap + marker("stdout").size());
  // Counted by the agent that saw the item end.
  EXPECT_EQ(metric("phonefarm_log_bytes_dropped_total{stream=\"stdout\"}"), static_cast<double>(1000000 - kCap));
  EXPECT_EQ(metric("phonefarm_log_bytes_dropped_total{stream=\"stderr\"}"), 0);
}

TEST_F(LogCap, OutputBelowTheCapIsKeptWholeWithoutMarkerOrNote) {
  const std::string job = writeJob("small.sh",
                                   "#!/bin/sh\n"
                                   "head -c 65536 /dev/zero | tr '\\0' a\n"
                                   "echo warning >&2\n");
  submitWork("small", {{job}});
  auto p = waitForStatus("small", "succeeded");
  EXPECT_TRUE(p.at("queue_items").at(0).at("note").is_null()) << json::serialize(p);
  auto served = call("GET", "/processes/small/items/small-q0/logs", "", kReadToken);
  EXPECT_EQ(served.body, std::string(kCap, 'a'));
  EXPECT_EQ(call("GET", "/processes/small/items/small-q0/logs?stream=stderr", "", kReadToken).body, "warning\n");
  EXPECT_EQ(metric("phonefarm_log_bytes_dropped_total{stream=\"stdout\"}"), 0);
}

}  // namespace
}  // namespace phonefarm::testing
