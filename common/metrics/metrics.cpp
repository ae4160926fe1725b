#include "common/metrics/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <variant>

namespace phonefarm::metrics {
namespace {

enum Type { kCounter, kGauge, kHistogram };
constexpr const char* kTypeNames[] = {"counter", "gauge", "histogram"};

bool validName(std::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

std::string escapeHelp(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// `{a="x",b="y"}` with an optional extra label last (the histogram's `le`).
std::string labelSet(const Labels& labels, std::string_view extra_name = {}, std::string_view extra_value = {}) {
  if (labels.empty() && extra_name.empty()) return {};
  std::string out = "{";
  for (const auto& [k, v] : labels) {
    if (out.size() > 1) out += ',';
    out += k + "=\"" + escapeLabelValue(v) + '"';
  }
  if (!extra_name.empty()) {
    if (out.size() > 1) out += ',';
    out += std::string(extra_name) + "=\"" + std::string(extra_value) + '"';
  }
  return out + "}";
}

}  // namespace

std::string escapeLabelValue(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string formatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);  // shortest round-trip form
  return ec == std::errc() ? std::string(buf, end) : "NaN";
}

void Counter::inc(double by) {
  if (by < 0) throw std::invalid_argument("counter increments must be >= 0");
  value_.fetch_add(by, std::memory_order_relaxed);
}

void Gauge::inc(double by) { value_.fetch_add(by, std::memory_order_relaxed); }

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {
  if (!std::is_sorted(bounds_.begin(), bounds_.end()) ||
      std::adjacent_find(bounds_.begin(), bounds_.end()) != bounds_.end() ||
      std::any_of(bounds_.begin(), bounds_.end(), [](double b) { return !std::isfinite(b); })) {
    throw std::invalid_argument("histogram bounds must be finite and strictly ascending");
  }
}

void Histogram::observe(double value) {
  // The first bucket whose upper bound (inclusive) holds the value.
  const auto i = static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  std::lock_guard lock(mutex_);
  ++counts_[i];
  sum_ += value;
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  std::lock_guard lock(mutex_);
  s.sum = sum_;
  for (auto c : counts_) s.cumulative.push_back(s.count += c);
  return s;
}

std::vector<double> defaultSecondsBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

struct Registry::Family {
  std::string help;
  int type = kCounter;
  std::vector<double> bounds;  // histograms
  std::map<Labels, std::variant<Counter, Gauge, Histogram>> children;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Family& Registry::family(std::string_view name, std::string_view help, int type, const Labels& labels) {
  if (!validName(name, true)) throw std::invalid_argument("bad metric name: " + std::string(name));
  for (const auto& [k, v] : labels) {
    if (!validName(k, false) || k.starts_with("__") || (type == kHistogram && k == "le"))
      throw std::invalid_argument("bad label name: " + k);
  }
  auto it = families_.find(name);
  if (it == families_.end()) {
    auto f = std::make_unique<Family>();
    f->help = std::string(help);
    f->type = type;
    it = families_.emplace(std::string(name), std::move(f)).first;
  } else if (it->second->type != type) {
    throw std::invalid_argument("metric registered with another type: " + std::string(name));
  }
  if (!it->second->children.empty()) {
    const Labels& first = it->second->children.begin()->first;
    if (!std::equal(first.begin(), first.end(), labels.begin(), labels.end(),
                    [](const auto& a, const auto& b) { return a.first == b.first; }))
      throw std::invalid_argument("label names differ within family: " + std::string(name));
  }
  return *it->second;
}

Counter& Registry::counter(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  auto& children = family(name, help, kCounter, labels).children;
  auto it = children.find(labels);
  if (it == children.end()) it = children.try_emplace(labels, std::in_place_type<Counter>).first;
  return std::get<Counter>(it->second);
}

Gauge& Registry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  auto& children = family(name, help, kGauge, labels).children;
  auto it = children.find(labels);
  if (it == children.end()) it = children.try_emplace(labels, std::in_place_type<Gauge>).first;
  return std::get<Gauge>(it->second);
}

Histogram& Registry::histogram(std::string_view name, std::string_view help, const std::vector<double>& bounds,
                               const Labels& labels) {
  std::lock_guard lock(mutex_);
  Family& f = family(name, help, kHistogram, labels);
  if (f.children.empty()) {
    f.bounds = bounds;
  } else if (f.bounds != bounds) {
    throw std::invalid_argument("histogram registered with other buckets: " + std::string(name));
  }
  auto it = f.children.find(labels);
  if (it == f.children.end()) it = f.children.try_emplace(labels, std::in_place_type<Histogram>, bounds).first;
  return std::get<Histogram>(it->second);
}

std::string Registry::render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + ' ' + escapeHelp(f->help) + '\n';
    out += "# TYPE " + name + ' ' + kTypeNames[f->type] + '\n';
    for (const auto& [labels, child] : f->children) {
      if (const auto* c = std::get_if<Counter>(&child)) {
        out += name + labelSet(labels) + ' ' + formatValue(c->value()) + '\n';
      } else if (const auto* g = std::get_if<Gauge>(&child)) {
        out += name + labelSet(labels) + ' ' + formatValue(g->value()) + '\n';
      } else {
        const auto s = std::get<Histogram>(child).snapshot();
        for (std::size_t i = 0; i <= s.bounds.size(); ++i) {
          const std::string le = i < s.bounds.size() ? formatValue(s.bounds[i]) : "+Inf";
          out += name + "_bucket" + labelSet(labels, "le", le) + ' ' + std::to_string(s.cumulative[i]) + '\n';
        }
        out += name + "_sum" + labelSet(labels) + ' ' + formatValue(s.sum) + '\n';
        out += name + "_count" + labelSet(labels) + ' ' + std::to_string(s.count) + '\n';
      }
    }
  }
  return out;
}

}  // namespace phonefarm::metrics
