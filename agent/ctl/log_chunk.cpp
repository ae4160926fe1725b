// readLogChunk; see log_chunk.hpp.
#include "agent/ctl/log_chunk.hpp"

#include <charconv>
#include <string>
#include <string_view>

namespace phonefarm::ctl {
namespace {

std::uint64_t headerNumber(const HttpResponse& r, std::string_view name) {
  const std::string v = r.header(name);
  std::uint64_t n = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || ptr != v.data() + v.size()) {
    throw Exit{kExitApi, "the agent's log answer has no valid " + std::string(name) + " header"};
  }
  return n;
}

}  // namespace

LogChunk readLogChunk(const HttpResponse& r, std::uint64_t offset) {
  LogChunk chunk;
  chunk.next_offset = headerNumber(r, "x-phonefarm-next-offset");
  chunk.log_size = headerNumber(r, "x-phonefarm-log-size");
  chunk.more = r.header("x-phonefarm-more") == "true";
  if (chunk.next_offset < offset) throw Exit{kExitApi, "the agent's log answer went backwards"};
  return chunk;
}

}  // namespace phonefarm::ctl
