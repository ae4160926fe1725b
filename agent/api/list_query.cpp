// Query strings: the walk over percent-decoded parameters and integer
// values every query parser shares (GET /processes here, GET .../logs in
// logs_api.cpp), GET /processes's filters (status, phone_id) and paging
// (limit, cursor), and the same paging of GET /phones/{id}/resets. Unknown
// parameters are ignored, like unknown body fields.
#include <charconv>

#include "agent/api/request_validation.hpp"
#include "common/hex_digit.hpp"
#include "common/ids.hpp"

namespace phonefarm::api {
std::optional<std::string> percentDecode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (plus_is_space && in[i] == '+') {
      out.push_back(' ');
    } else if (in[i] == '%') {
      if (i + 2 >= in.size()) return std::nullopt;
      const int hi = hexDigitValue(in[i + 1]);
      const int lo = hexDigitValue(in[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

void addQueryError(FieldErrors& errors, std::string_view key, std::string msg, std::string type) {
  errors.push_back(FieldError{boost::json::array{"query", boost::json::string(key)}, std::move(msg), std::move(type)});
}

void forEachQueryParameter(std::string_view query, FieldErrors& errors,
                           const std::function<void(const std::string& key, const std::string& value)>& fn) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    auto key = percentDecode(pair.substr(0, eq), true);
    auto value = percentDecode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), true);
    if (!key) continue;
    if (!value) {
      addQueryError(errors, *key, "Value error, malformed percent-encoding", "value_error");
      continue;
    }
    fn(*key, *value);
  }
}

std::optional<std::int64_t> parseQueryInteger(std::string_view key, std::string_view value, std::int64_t min,
                                              std::int64_t max, FieldErrors& errors) {
  std::int64_t n = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (value.empty() || ec != std::errc() || ptr != value.data() + value.size()) {
    addQueryError(errors, key, "Input should be a valid integer, unable to parse string as an integer", "int_parsing");
  } else if (n < min) {
    addQueryError(errors, key, "Input should be greater than or equal to " + std::to_string(min), "greater_than_equal");
  } else if (n > max) {
    addQueryError(errors, key, "Input should be less than or equal to " + std::to_string(max), "less_than_equal");
  } else {
    return n;
  }
  return std::nullopt;
}

namespace {

// `limit` or `cursor` of a newest-first list; false for any other key.
bool parsePagingParameter(const std::string& key, const std::string& value, std::size_t& limit,
                          std::optional<std::int64_t>& cursor, FieldErrors& errors) {
  if (key == "limit") {
    if (auto n = parseQueryInteger(key, value, 1, static_cast<std::int64_t>(kMaxListLimit), errors)) {
      limit = static_cast<std::size_t>(*n);
    }
    return true;
  }
  if (key == "cursor") {
    cursor = decodeCursor(value);
    if (!cursor) addQueryError(errors, key, "Value error, not a cursor returned by this endpoint", "value_error");
    return true;
  }
  return false;
}

}  // namespace

Validated<ListQuery> parseListQuery(std::string_view query) {
  ListQuery q;
  FieldErrors errors;
  forEachQueryParameter(query, errors, [&](const std::string& key, const std::string& value) {
    if (parsePagingParameter(key, value, q.limit, q.cursor, errors)) return;
    if (key == "status") {
      q.status = parseProcessStatus(value);
      if (!q.status) {
        addQueryError(errors, key,
                      "Input should be 'queued', 'running', 'cancelling', 'succeeded', 'failed' or 'cancelled'",
                      "literal_error");
      }
    } else if (key == "phone_id") {
      if (isValidId(value)) {
        q.phone_id = value;
      } else {
        addQueryError(errors, key, "String should match pattern '" + std::string(kIdPattern) + "'",
                      "string_pattern_mismatch");
      }
    }
  });
  if (!errors.empty()) return errors;
  return q;
}

Validated<PageQuery> parsePageQuery(std::string_view query) {
  PageQuery q;
  FieldErrors errors;
  forEachQueryParameter(query, errors, [&](const std::string& key, const std::string& value) {
    parsePagingParameter(key, value, q.limit, q.cursor, errors);
  });
  if (!errors.empty()) return errors;
  return q;
}

}  // namespace phonefarm::api
