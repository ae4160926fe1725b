// The metrics registry and its Prometheus text exposition (version 0.0.4).
#include "common/metrics/metrics.hpp"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

namespace phonefarm::metrics {
namespace {

bool contains(const std::string& text, const std::string& line) { return text.find(line + "\n") != std::string::npos; }

TEST(MetricsTest, CountersWithLabelsAndGauges) {
  Registry r;
  r.counter("phonefarm_x_total", "Things.", {{"kind", "a"}, {"status", "200"}}).inc();
  r.counter("phonefarm_x_total", "Things.", {{"kind", "a"}, {"status", "200"}}).inc(2);
  r.counter("phonefarm_x_total", "Things.", {{"kind", "b"}, {"status", "404"}}).inc();
  r.gauge("phonefarm_g", "A gauge.").set(2.5);
  r.gauge("phonefarm_g2", "Another.").inc(-3);
  const std::string out = r.render();
  EXPECT_TRUE(contains(out, "# HELP phonefarm_x_total Things.")) << out;
  EXPECT_TRUE(contains(out, "# TYPE phonefarm_x_total counter")) << out;
  EXPECT_TRUE(contains(out, R"(phonefarm_x_total{kind="a",status="200"} 3)")) << out;
  EXPECT_TRUE(contains(out, R"(phonefarm_x_total{kind="b",status="404"} 1)")) << out;
  EXPECT_TRUE(contains(out, "# TYPE phonefarm_g gauge")) << out;
  EXPECT_TRUE(contains(out, "phonefarm_g 2.5")) << out;
  EXPECT_TRUE(contains(out, "phonefarm_g2 -3")) << out;
  EXPECT_THROW(r.counter("phonefarm_x_total", "Things.").inc(-1), std::invalid_argument);
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithInfEqualToCount) {
  Registry r;
  auto& h = r.histogram("phonefarm_d_seconds", "Durations.", {0.5, 1, 10}, {{"route", "/x"}});
  for (double v : {0.25, 0.5, 0.75, 2.0, 20.0, 32.0}) h.observe(v);
  const std::string out = r.render();
  EXPECT_TRUE(contains(out, "# TYPE phonefarm_d_seconds histogram")) << out;
  EXPECT_TRUE(contains(out, R"(phonefarm_d_seconds_bucket{route="/x",le="0.5"} 2)")) << out;  // le is inclusive
  EXPECT_TRUE(contains(out, R"(phonefarm_d_seconds_bucket{route="/x",le="1"} 3)")) << out;
  EXPECT_TRUE(contains(out, R"(phonefarm_d_seconds_bucket{route="/x",le="10"} 4)")) << out;
  EXPECT_TRUE(contains(out, R"(phonefarm_d_seconds_bucket{route="/x",le="+Inf"} 6)")) << out;
  EXPECT_TRUE(contains(out, R"(phonefarm_d_seconds_sum{route="/x"} 55.5)")) << out;
  EXPECT_TRUE(contains(out, R"(phonefarm_d_seconds_count{route="/x"} 6)")) << out;
  // Other buckets for the same family, a reserved label, unsorted bounds.
  EXPECT_THROW(r.histogram("phonefarm_d_seconds", "Durations.", {1}, {{"route", "/y"}}), std::invalid_argument);
  EXPECT_THROW(r.histogram("phonefarm_e_seconds", "E.", {1}, {{"le", "1"}}), std::invalid_argument);
  EXPECT_THROW(r.histogram("phonefarm_f_seconds", "F.", {2, 1}), std::invalid_argument);
}

TEST(MetricsTest, LabelValuesAndHelpAreEscaped) {
  Registry r;
  r.counter("phonefarm_esc_total", "Help with \\ and\nnewline.", {{"v", "a\\b\"c\nd"}}).inc();
  const std::string out = r.render();
  EXPECT_TRUE(contains(out, R"(# HELP phonefarm_esc_total Help with \\ and\nnewline.)")) << out;
  EXPECT_TRUE(contains(out, R"(phonefarm_esc_total{v="a\\b\"c\nd"} 1)")) << out;
  EXPECT_EQ(escapeLabelValue("plain"), "plain");
}

TEST(MetricsTest, BadNamesAndTypeClashesAreRejected) {
  Registry r;
  EXPECT_THROW(r.counter("1bad", "x"), std::invalid_argument);
  EXPECT_THROW(r.counter("phonefarm_ok_total", "x", {{"bad-label", "v"}}), std::invalid_argument);
  EXPECT_THROW(r.counter("phonefarm_ok_total", "x", {{"__reserved", "v"}}), std::invalid_argument);
  r.counter("phonefarm_ok_total", "x", {{"a", "1"}});
  EXPECT_THROW(r.gauge("phonefarm_ok_total", "x", {{"a", "1"}}), std::invalid_argument);
  EXPECT_THROW(r.counter("phonefarm_ok_total", "x", {{"b", "1"}}), std::invalid_argument);
}

TEST(MetricsTest, ValuesAreFormattedForTheExposition) {
  EXPECT_EQ(formatValue(0), "0");
  EXPECT_EQ(formatValue(42), "42");
  EXPECT_EQ(formatValue(0.25), "0.25");
  EXPECT_EQ(formatValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(formatValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(formatValue(0.0 / 0.0), "NaN");
}

TEST(MetricsTest, ConcurrentUpdatesSumCorrectly) {
  Registry r;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&r, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Lookups race with creation of other children, too.
        r.counter("phonefarm_c_total", "C.", {{"t", std::to_string(t % 2)}}).inc();
        r.gauge("phonefarm_g", "G.").inc();
        r.histogram("phonefarm_h", "H.", {1, 2}).observe(i % 3);
      }
    });
  }
  for (auto& th : threads) th.join();
  const std::string out = r.render();
  const std::string half = std::to_string(kThreads / 2 * kPerThread);
  const std::string all = std::to_string(kThreads * kPerThread);
  EXPECT_TRUE(contains(out, R"(phonefarm_c_total{t="0"} )" + half)) << out;
  EXPECT_TRUE(contains(out, R"(phonefarm_c_total{t="1"} )" + half)) << out;
  EXPECT_TRUE(contains(out, "phonefarm_g " + all)) << out;
  EXPECT_TRUE(contains(out, R"(phonefarm_h_bucket{le="+Inf"} )" + all)) << out;
  EXPECT_TRUE(contains(out, "phonefarm_h_count " + all)) << out;
}

// A strict check of the exposition without promtool (which the integration
// test MetricsApi.PromtoolAcceptsTheExposition runs on the real agent's
// output): every line is matched against the text format's grammar, and every
// family has HELP then TYPE before its samples, with sample names that belong
// to the family (histograms: _bucket, _sum, _count).
void checkExposition(const std::string& text) {
  ASSERT_FALSE(text.empty());
  ASSERT_EQ(text.back(), '\n');
  const std::string name = "[a-zA-Z_:][a-zA-Z0-9_:]*";
  const std::string label_value = R"("(?:[^"\\\n]|\\\\|\\"|\\n)*")";
  const std::string label = "[a-zA-Z_][a-zA-Z0-9_]*=" + label_value;
  const std::string value = R"((?:[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]Inf|NaN))";
  const std::regex help_re("# HELP (" + name + R"() (?:[^\\\n]|\\\\|\\n)*)");
  const std::regex type_re("# TYPE (" + name + ") (counter|gauge|histogram|summary|untyped)");
  const std::regex sample_re("(" + name + ")(\\{(?:" + label + "(?:," + label + ")*)?\\})? " + value);
  const std::regex le_re(R"re(le="([^"]*)")re");

  std::map<std::string, std::string> types;  // family -> type
  std::set<std::string> helped;
  std::string current;  // the family whose samples may follow
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    SCOPED_TRACE(line);
    std::smatch m;
    const auto group = [&m](int i) { return m[i].str(); };
    if (std::regex_match(line, m, help_re)) {
      ASSERT_TRUE(helped.insert(group(1)).second) << "HELP twice";
      ASSERT_FALSE(types.contains(group(1))) << "HELP after TYPE";
      current = group(1);
    } else if (std::regex_match(line, m, type_re)) {
      ASSERT_EQ(group(1), current) << "TYPE without its HELP just before";
      ASSERT_TRUE(types.emplace(group(1), group(2)).second) << "TYPE twice";
    } else if (std::regex_match(line, m, sample_re)) {
      ASSERT_TRUE(types.contains(current)) << "sample before HELP/TYPE";
      const std::string sample = group(1);
      if (types[current] == "histogram") {
        ASSERT_TRUE(sample == current + "_bucket" || sample == current + "_sum" || sample == current + "_count");
        if (sample == current + "_bucket") {
          ASSERT_TRUE(std::regex_search(line, le_re)) << "bucket without le";
        }
      } else {
        ASSERT_EQ(sample, current);
      }
    } else {
      FAIL() << "not exposition grammar";
    }
  }
}

TEST(MetricsTest, TheGrammarCheckRejectsBadExpositions) {
  EXPECT_FATAL_FAILURE(checkExposition("phonefarm_x 1\n"), "sample before HELP/TYPE");
  EXPECT_FATAL_FAILURE(checkExposition("# TYPE phonefarm_x counter\nphonefarm_x 1\n"), "TYPE without its HELP");
  EXPECT_FATAL_FAILURE(checkExposition("# HELP phonefarm_x X.\n# TYPE phonefarm_x counter\nphonefarm_x{a=\"b} 1\n"),
                       "not exposition grammar");
  EXPECT_FATAL_FAILURE(checkExposition("# HELP phonefarm_x X.\n# TYPE phonefarm_x counter\nphonefarm_y 1\n"),
                       "Expected equality");
  EXPECT_FATAL_FAILURE(checkExposition("# HELP phonefarm_x X.\n# TYPE phonefarm_x counter\nphonefarm_x one\n"),
                       "not exposition grammar");
}

TEST(MetricsTest, RenderMatchesTheExpositionGrammar) {
  Registry r;
  r.counter("phonefarm_req_total", "Requests.", {{"route", "/processes/{process_id}"}, {"status", "200"}}).inc();
  r.counter("phonefarm_req_total", "Requests.", {{"route", "we\"ird\\\n"}, {"status", "500"}}).inc();
  r.gauge("phonefarm_up", "Up.").set(1);
  r.gauge("phonefarm_temp", "Temp.").set(-0.5);
  r.gauge("phonefarm_inf", "Inf.").set(1.0 / 0.0);
  auto& h = r.histogram("phonefarm_lat_seconds", "Latency.", defaultSecondsBuckets(), {{"route", "/x"}});
  h.observe(0.003);
  h.observe(7);
  r.histogram("phonefarm_empty_seconds", "No observations.", {0.5});
  checkExposition(r.render());
}

}  // namespace
}  // namespace phonefarm::metrics
