// text::printable, the one way outside text reaches an error or a log line:
// each option as its callers (adb server text, USB strings, TOML keys) use it.
#include "common/text/printable.hpp"

#include <gtest/gtest.h>

namespace phonefarm::text {
namespace {

TEST(PrintableTest, ControlAndNonAsciiBytesBecomeQuestionMarks) {
  EXPECT_EQ(printable("ok\x01\x7f"
                      "caf\xc3\xa9"),
            "ok??caf??");
  EXPECT_EQ(printable("a\nb"), "a?b");
}

TEST(PrintableTest, LongTextIsCutWithAnEllipsis) {
  EXPECT_EQ(printable(std::string(600, 'x')), std::string(512, 'x') + "...");
  EXPECT_EQ(printable(std::string(512, 'x')), std::string(512, 'x'));
  EXPECT_EQ(printable(std::string(100000, 'x'), kUnlimited).size(), 100000u);
}

TEST(PrintableTest, JoinedLinesForServerAndChildText) {
  const PrintableOptions lines{.join_lines = true};
  EXPECT_EQ(printable("device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\r\n \t", lines),
            "device unauthorized. | This adb server's $ADB_VENDOR_KEYS is not set");
}

TEST(PrintableTest, QuotedForUsbStrings) {
  const PrintableOptions quoted{.max_bytes = 64, .quoted = true};
  EXPECT_EQ(printable("1-1\n..", quoted), "\"1-1?..\"");
  EXPECT_EQ(printable("a\"b\\c", quoted), "\"a?b?c\"");
  EXPECT_EQ(printable(std::string(70, 's'), quoted), "\"" + std::string(64, 's') + "...\"");
}

TEST(PrintableTest, HexEscapesAndUtf8ForTomlKeys) {
  const PrintableOptions toml{.max_bytes = kUnlimited.max_bytes, .escape_as_hex = true, .keep_utf8 = true};
  EXPECT_EQ(printable("bad\nkey\x7f", toml), "bad\\x0akey\\x7f");
  EXPECT_EQ(printable("caf\xc3\xa9", toml), "caf\xc3\xa9");
}

}  // namespace
}  // namespace phonefarm::text
