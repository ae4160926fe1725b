// AdbProbe, the adb server's state in GET /debug: what it reports of a server
// that answers (through a fake AdbHost) and of one that is not running (the
// real AdbClient at a port nothing listens on).
#include "agent/phone/adb_probe.hpp"

#include <gtest/gtest.h>

#include <boost/json/serialize.hpp>
#include <future>

#include "agent/phone/adb_client.hpp"
#include "tests/fakes/fake_adb_host.hpp"

namespace phonefarm::phone {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

TEST(AdbProbeTest, ReportsTheVersionAndTheDevices) {
  FakeAdbHost adb;
  adb.devices_result = std::vector<AdbDevice>{{"R58M", "device", {{"usb", "1-1.4"}, {"model", "SM_A515F"}}}};
  AdbProbe probe(adb, 500ms);
  const auto o = probe.probeNow();
  EXPECT_EQ(o.at("server"), "127.0.0.1:5037");
  EXPECT_EQ(o.at("up"), true);
  EXPECT_EQ(o.at("version"), "0029");
  ASSERT_EQ(o.at("devices").as_array().size(), 1u) << json::serialize(o);
  const auto& d = o.at("devices").as_array()[0].as_object();
  EXPECT_EQ(d.at("serial"), "R58M");
  EXPECT_EQ(d.at("state"), "device");
  EXPECT_EQ(d.at("properties").at("usb"), "1-1.4");
  EXPECT_EQ(adb.calls(), (std::vector<std::string>{"version", "devices"}));
}

TEST(AdbProbeTest, ADeviceListErrorIsReportedNextToTheVersion) {
  FakeAdbHost adb;
  adb.devices_result = makeError(ErrorKind::kUnavailable, "adb devices: timed out after 500 ms");
  AdbProbe probe(adb, 500ms);
  const auto o = probe.probeNow();
  EXPECT_EQ(o.at("up"), true);
  EXPECT_EQ(o.at("devices_error"), "adb devices: timed out after 500 ms");
  EXPECT_FALSE(o.contains("devices"));
}

TEST(AdbProbeTest, ReportsAServerThatIsNotRunning) {
  // Port 1 on loopback: nothing listens, the probe answers at once.
  AdbClient adb(AdbEndpoint{"127.0.0.1", 1});
  AdbProbe probe(adb, 500ms);
  std::promise<json::object> got;
  probe.probe([&got](json::object o) { got.set_value(std::move(o)); });
  auto f = got.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  const auto o = f.get();
  EXPECT_EQ(o.at("server"), "127.0.0.1:1");
  EXPECT_EQ(o.at("up"), false);
  EXPECT_NE(std::string(o.at("error").as_string()).find("not running"), std::string::npos) << json::serialize(o);
}

}  // namespace
}  // namespace phonefarm::phone
