// What phonefarmctl prints for people: JSON values as table cells (agent text
// cleaned of control characters, so it cannot drive the terminal), aligned
// tables, and colors. Colors only when wanted: --color=always, or
// --color=auto (the default) with stdout a terminal, TERM not "dumb" and
// NO_COLOR unset (https://no-color.org).
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace phonefarm::ctl {

// Removes control characters so that agent-supplied text cannot drive the terminal.
std::string clean(std::string_view s);

// A JSON value as one table cell: strings as is, null (or absent) as "-".
std::string cell(const boost::json::value* v);
std::string cell(const boost::json::object& o, std::string_view key);
// requested_by in short: its user, else its system, else the JSON.
std::string who(const boost::json::value* v);

const boost::json::object* objectAt(const boost::json::object& o, std::string_view key);
const boost::json::array* arrayAt(const boost::json::object& o, std::string_view key);

std::string plural(std::size_t n, const char* word);

enum class ColorMode { kAuto, kAlways, kNever };

// kAuto: `fd` is a terminal, TERM is set and not "dumb", NO_COLOR is unset.
bool colorsWanted(ColorMode mode, int fd);

// SGR sequences; "" means plain.
inline constexpr std::string_view kGreen = "\x1b[32m";
inline constexpr std::string_view kYellow = "\x1b[33m";
inline constexpr std::string_view kRed = "\x1b[31m";
inline constexpr std::string_view kBold = "\x1b[1m";
inline constexpr std::string_view kReset = "\x1b[0m";

// The color of a state word: phone health and adb state, process and queue
// item status ("ready"/"succeeded" green, "busy"/"running" yellow,
// "needs_attention"/"failed" red, ...); "" for words without one.
std::string_view stateColor(std::string_view state);

// `text` wrapped in `sgr` when colors are on.
std::string paint(std::string_view text, std::string_view sgr, bool colors);

struct Cell {
  Cell(std::string t) : text(std::move(t)) {}  // NOLINT: plain strings are cells
  Cell(const char* t) : text(t) {}             // NOLINT
  Cell(std::string t, std::string_view c) : text(std::move(t)), sgr(c) {}
  std::string text;
  std::string_view sgr;  // "" = plain
};

// A cell colored by stateColor(text).
Cell stateCell(std::string text);

// Columns padded to the widest cell (colors do not count), two spaces apart;
// the header row is bold when colors are on.
class Table {
 public:
  explicit Table(std::vector<Cell> header) { rows_.push_back(std::move(header)); }
  void add(std::vector<Cell> row);
  void print(std::ostream& out, bool colors) const;

 private:
  std::vector<std::vector<Cell>> rows_;
};

}  // namespace phonefarm::ctl
