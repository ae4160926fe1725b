// Cells, tables and colors; see output.hpp.
#include "agent/ctl/output.hpp"

#include <unistd.h>

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <cstdlib>

namespace phonefarm::ctl {

namespace json = boost::json;

std::string clean(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  return out;
}

std::string cell(const json::value* v) {
  if (v == nullptr || v->is_null()) return "-";
  if (v->is_string()) return clean(v->get_string());
  return clean(json::serialize(*v));
}

std::string cell(const json::object& o, std::string_view key) { return cell(o.if_contains(key)); }

std::string who(const json::value* v) {
  if (v != nullptr && v->is_object()) {
    for (const char* key : {"user", "system"}) {
      const json::value* s = v->get_object().if_contains(key);
      if (s != nullptr && s->is_string() && !s->get_string().empty()) return clean(s->get_string());
    }
  }
  return cell(v);
}

const json::object* objectAt(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_object() ? &v->get_object() : nullptr;
}

const json::array* arrayAt(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_array() ? &v->get_array() : nullptr;
}

std::string plural(std::size_t n, const char* word) { return std::to_string(n) + " " + word + (n == 1 ? "" : "s"); }

bool colorsWanted(ColorMode mode, int fd) {
  switch (mode) {
    case ColorMode::kAlways:
      return true;
    case ColorMode::kNever:
      return false;
    case ColorMode::kAuto:
      break;
  }
  if (const char* no_color = std::getenv("NO_COLOR"); no_color != nullptr) return false;
  const char* term = std::getenv("TERM");
  if (term == nullptr || *term == '\0' || std::string_view(term) == "dumb") return false;
  return ::isatty(fd) == 1;
}

std::string_view stateColor(std::string_view state) {
  // Health and adb state of phones, status of processes and queue items.
  for (std::string_view s : {"ready", "device", "succeeded"}) {
    if (state == s) return kGreen;
  }
  for (std::string_view s : {"busy", "resetting", "queued", "running", "cancelling", "pending", "executing"}) {
    if (state == s) return kYellow;
  }
  for (std::string_view s : {"needs_attention", "failed", "cancelled", "offline", "unauthorized", "absent"}) {
    if (state == s) return kRed;
  }
  return {};
}

std::string paint(std::string_view text, std::string_view sgr, bool colors) {
  if (!colors || sgr.empty()) return std::string(text);
  std::string out(sgr);
  out += text;
  out += kReset;
  return out;
}

Cell stateCell(std::string text) {
  const std::string_view color = stateColor(text);
  return Cell(std::move(text), color);
}

void Table::add(std::vector<Cell> row) {
  row.resize(rows_.front().size(), Cell(std::string()));
  rows_.push_back(std::move(row));
}

void Table::print(std::ostream& out, bool colors) const {
  std::vector<std::size_t> width(rows_.front().size(), 0);
  for (const auto& row : rows_) {
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].text.size());
  }
  bool header = true;
  for (const auto& row : rows_) {
    std::string line;
    std::size_t pending_spaces = 0;  // padding is written only before a next cell: no trailing blanks
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (row[i].text.empty()) {
        pending_spaces += width[i] + 2;
        continue;
      }
      line.append(pending_spaces, ' ');
      line += paint(row[i].text, header ? kBold : row[i].sgr, colors);
      pending_spaces = width[i] - row[i].text.size() + 2;
    }
    out << line << '\n';
    header = false;
  }
}

}  // namespace phonefarm::ctl
