// `phonefarmctl debug-dump [-o FILE]`: one .tar.gz a technician attaches to a
// ticket. It holds a directory phonefarm-debug-<host>-<UTC time>/ with
//   debug.json      GET /debug (operate scope): version, config without
//                   secrets, readiness, adb server, work cgroups, counters
//   phones.json     GET /phones?all=1
//   processes.json  GET /processes?limit=200
//   metrics.txt     GET /metrics
//   journal.txt     journalctl -u phonefarm-agent -n 2000 (or why not)
//   ctl-version.txt this tool's version, the agent URL, when and where
// A part that fails (403, agent down) leaves <part>.error.txt instead and the
// archive is still written; the command then exits non-zero naming what is
// missing. The archive is built by `tar` (posix_spawn, no shell) from a
// private temporary directory that is removed afterwards.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "agent/ctl/commands.hpp"
#include "agent/ctl/output.hpp"
#include "agent/ctl/program_runner.hpp"
#include "common/os/sys_error.hpp"

namespace phonefarm::ctl {
namespace {

namespace fs = std::filesystem;

constexpr auto kJournalTimeout = std::chrono::seconds(30);
constexpr auto kTarTimeout = std::chrono::seconds(60);

struct DumpArgs {
  std::string output;
};

struct ApiPart {
  const char* file;
  const char* target;
  const char* scope;
};

constexpr ApiPart kApiParts[] = {{"debug.json", "/debug", "operate"},
                                 {"phones.json", "/phones?all=1", "read"},
                                 {"processes.json", "/processes?limit=200", "read"},
                                 {"metrics.txt", "/metrics", "read"}};

// Removes the temporary directory however the command ends.
class TempDir {
 public:
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/phonefarmctl-dump.XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw Exit{kExitApi, "cannot create a temporary directory " + pattern + ": " + os::errnoText(errno)};
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string hostName() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::string out;
  for (const char* p = host; *p != '\0'; ++p) {
    const char c = *p;
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    out += ok ? c : '_';
  }
  return out.empty() ? "unknown-host" : out;
}

std::string utcStamp(std::time_t t, const char* format) {
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

void writeText(const fs::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  if (!text.empty() && text.back() != '\n') out << '\n';
  if (!out) throw Exit{kExitApi, "cannot write " + path.string()};
}

// One API part: its file, or <file>.error.txt and the reason.
std::optional<std::string> fetchPart(const AgentClient& client, const ApiPart& part, const fs::path& dir,
                                     bool& unreachable) {
  std::string problem;
  try {
    const HttpResponse r = client.call("GET", part.target);
    if (r.status >= 200 && r.status <= 299) {
      writeText(dir / part.file, r.body);
      return std::nullopt;
    }
    problem = apiError(r, {part.scope, ""}).message;
  } catch (const Exit& e) {
    if (e.code != kExitUnreachable) throw;
    unreachable = true;
    problem = e.message;
  }
  writeText(dir / (std::string(part.file) + ".error.txt"),
            "GET " + std::string(part.target) + " failed: " + problem + "\n");
  return std::string(part.file) + " (" + problem + ")";
}

// journal.txt: the agent's last log lines under systemd, or a line saying why not.
void writeJournal(const fs::path& dir) {
  const fs::path file = dir / "journal.txt";
  const auto journalctl = findInPath("journalctl");
  if (!journalctl) {
    writeText(file, "journalctl not found in PATH: no journal on this host (is it running systemd?)\n");
    return;
  }
  const auto r = runProgram({*journalctl, "-u", "phonefarm-agent", "-n", "2000", "--no-pager", "-o", "short-iso"},
                            file.string(), kJournalTimeout);
  if (!r.started) {
    writeText(file, "could not run " + *journalctl + ": " + r.error + "\n");
  } else if (r.timed_out || r.exit_code != 0) {
    std::ofstream(file, std::ios::app) << "\n[phonefarmctl: journalctl "
                                       << (r.timed_out ? "timed out and was killed"
                                                       : "exited with " + std::to_string(r.exit_code))
                                       << "]\n";
  }
}

void run(const Context& ctx, const DumpArgs& a) {
  const std::time_t now = std::time(nullptr);
  const std::string name = "phonefarm-debug-" + hostName() + "-" + utcStamp(now, "%Y%m%dT%H%M%SZ");
  fs::path output = a.output.empty() ? fs::path(name + ".tar.gz") : fs::path(a.output);
  output = fs::absolute(output);

  TempDir tmp;
  const fs::path dir = tmp.path() / name;
  fs::create_directory(dir);

  std::vector<std::string> missing;
  bool unreachable = false;
  for (const ApiPart& part : kApiParts) {
    if (auto problem = fetchPart(ctx.client, part, dir, unreachable)) missing.push_back(std::move(*problem));
  }
  writeJournal(dir);
  writeText(dir / "ctl-version.txt", std::string("phonefarmctl ") + PHONEFARM_VERSION +
                                         "\nagent: " + ctx.client.urlText() + "\nhost: " + hostName() +
                                         "\ncreated: " + utcStamp(now, "%Y-%m-%dT%H:%M:%SZ") + "\n");

  const auto tar =
      runProgram({"tar", "-czf", output.string(), "-C", tmp.path().string(), name}, std::nullopt, kTarTimeout);
  if (!tar.started || tar.exit_code != 0) {
    std::error_code ec;
    fs::remove(output, ec);
    throw Exit{kExitApi, "could not write " + output.string() + ": tar " +
                             (!tar.started    ? tar.error
                              : tar.timed_out ? std::string("timed out")
                                              : "exited with " + std::to_string(tar.exit_code))};
  }
  std::cout << output.string() << '\n';
  if (!missing.empty()) {
    std::string msg = "the archive lacks " + plural(missing.size(), "part") + ":";
    for (const auto& m : missing) msg += "\n  " + m;
    throw Exit{unreachable && missing.size() == std::size(kApiParts) ? kExitUnreachable : kExitApi, msg};
  }
}

}  // namespace

Subcommand addDebugDump(CLI::App& app) {
  auto a = std::make_shared<DumpArgs>();
  auto* sub = app.add_subcommand(
      "debug-dump",
      "write a .tar.gz for a support ticket: agent state and config (no secrets), phones, processes, "
      "metrics, recent agent log lines");
  sub->add_option("-o,--output", a->output,
                  "archive path (default phonefarm-debug-<host>-<UTC time>.tar.gz in the current directory)");
  return {sub, [a](const Context& ctx) { run(ctx, *a); }};
}

}  // namespace phonefarm::ctl
