// The rack page in a real browser (Debian's chromium, headless, driven by
// chromium-driver + python3-selenium: tests/browser/rack_page.py) against
// the real agent, whose phones are fake-adbd instances connected through a
// private real adb server, as in phones_test. The rack holds those phones
// and enough unplugged ones on USB hubs to fill it (PHONEFARM_BROWSER_RACK:
// 100 by default, `smoke` = 12). The driver signs in, watches tiles change
// live, cancels and resets from the page, checks a read token's page and
// the layout at 1280x800 and 800 wide, saves screenshots under
// <build>/browser/ and fails on any console error. Label "browser": run by
// scripts/test as a stage of its own (ctest --preset browser).
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/work_fixture.hpp"
#include "tests/support/free_port.hpp"
#include "tests/support/run_command.hpp"

namespace phonefarm::testing {
namespace {

using std::chrono::seconds;

constexpr int kFakePhones = 3;

int rackSize() {
  const char* size = std::getenv("PHONEFARM_BROWSER_RACK");
  if (size == nullptr || *size == '\0') return 100;
  if (std::string_view(size) == "smoke") return 12;
  return std::max(kFakePhones, std::atoi(size));
}

class RackPageBrowser : public WorkFixture {
 protected:
  void SetUp() override {
    adb_port_ = freePort();
    adb_home_ = dir_.path() / "adb-home";
    std::filesystem::create_directories(adb_home_);
    for (int i = 0; i < kFakePhones; ++i) {
      fakes_.push_back(std::make_unique<AgentProcess>(
          PHONEFARM_FAKE_ADBD, std::vector<std::string>{"--port", "0", "--shell", "echo ok=ok"}, dir_.path()));
      ASSERT_TRUE(fakes_.back()->waitForLine("fake-adbd listening port=", seconds(10))) << fakes_.back()->output();
      const auto line = *fakes_.back()->findLine("fake-adbd listening port=");
      fake_ports_.push_back(static_cast<std::uint16_t>(std::stoi(line.substr(line.find("port=") + 5))));
    }
    ASSERT_EQ(adb("start-server").first, 0);
    for (auto port : fake_ports_) {
      auto connected = adb("connect 127.0.0.1:" + std::to_string(port));
      ASSERT_NE(connected.second.find("connected"), std::string::npos) << connected.second;
    }
    WorkFixture::SetUp();
  }

  void TearDown() override {
    WorkFixture::TearDown();
    fakes_.clear();
    adb("kill-server");
  }

  std::pair<int, std::string> adb(const std::string& args) const {
    std::vector<std::string> argv{"/usr/bin/env", "HOME=" + adb_home_.string(), "/usr/bin/adb", "-P",
                                  std::to_string(adb_port_)};
    std::istringstream words(args);
    for (std::string word; words >> word;) argv.push_back(word);
    const auto r = runCommand(argv);
    return {r.exit_code, r.output};
  }

  // phone_01..03 are the fake phones (network serials: no hub); the rest are
  // unplugged phones on 10-port hubs (1-1 .. 1-4, 2-1, ...), so the page has
  // hubs to group and absent phones to mark.
  std::string phonesConfig() const override {
    std::string out;
    const int size = rackSize();
    for (int i = 1; i <= size; ++i) {
      const std::string id = (i < 10 ? "phone_0" : "phone_") + std::to_string(i);
      out += "[[phones]]\nid = \"" + id + "\"\n";
      if (i <= kFakePhones) {
        out += "serial = \"127.0.0.1:" + std::to_string(fake_ports_[static_cast<std::size_t>(i - 1)]) + "\"\n";
      } else {
        const int n = i - kFakePhones - 1;
        const int hub = n / 10;
        out += "serial = \"UNPLUGGED" + std::to_string(i) + "\"\nusb_port = \"" + std::to_string(1 + hub / 4) + "-" +
               std::to_string(1 + hub % 4) + "." + std::to_string(1 + n % 10) + "\"\n";
      }
    }
    return out;
  }
  std::string adbConfig() const override {
    return "[adb]\nserver = \"127.0.0.1:" + std::to_string(adb_port_) + "\"\nadb_path = \"/usr/bin/adb\"\n";
  }
  std::string resetConfig() const override {
    return "[reset]\nadb_reconnect_timeout_seconds = 15\nusb_reset_timeout_seconds = 2\n";
  }
  bool waitForDevice() const override { return true; }

  std::uint16_t adb_port_ = 0;
  std::vector<std::uint16_t> fake_ports_;
  std::filesystem::path adb_home_;
  std::vector<std::unique_ptr<AgentProcess>> fakes_;
};

TEST_F(RackPageBrowser, SignInWatchCancelResetAndAReadOnlyView) {
  // Output on stdout and stderr, then runs until cancelled (no TERM trap:
  // the stop notice ends it).
  const auto job = writeJob("busy.sh",
                            "#!/bin/sh\n"
                            "echo \"hello from the job on $ANDROID_SERIAL\"\n"
                            "echo 'a warning on stderr' >&2\n"
                            "while :; do sleep 1; done\n");
  const std::string out_dir = PHONEFARM_BROWSER_OUT;
  std::filesystem::create_directories(out_dir);
  // The tokens go to the driver in a file of the test's own, never on its
  // command line.
  const auto tokens = dir_.path() / "browser-tokens.json";
  writeFile(tokens,
            std::string("{\"read\": \"") + kReadToken + "\", \"operate\": \"" + kOperateToken + "\", \"schedule\": \"" +
                kScheduleToken + "\"}\n",
            0600);
  CommandOptions options;
  options.timeout = seconds(240);
  const auto r = runCommand({"/usr/bin/python3", std::string(PHONEFARM_SOURCE_DIR) + "/tests/browser/rack_page.py",
                             "--url", "http://127.0.0.1:" + std::to_string(port_) + "/", "--tokens", tokens.string(),
                             "--job", job, "--phones", std::to_string(rackSize()), "--out", out_dir},
                            options);
  EXPECT_EQ(r.exit_code, 0) << (r.timed_out ? "timed out\n" : "") << r.output << "\nagent output:\n"
                            << agent_->output();
  std::cout << r.output;
}

}  // namespace
}  // namespace phonefarm::testing
