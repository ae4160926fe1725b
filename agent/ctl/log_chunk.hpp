// One answer of GET /processes/{id}/items/{item}/logs?offset=: the agent
// sends at most 1 MiB of the log per answer and says in three headers where
// the next read starts (X-Phonefarm-Next-Offset), how big the log is now
// (X-Phonefarm-Log-Size) and whether more can come (X-Phonefarm-More: the
// item still runs). `phonefarmctl logs` reads on from there.
#pragma once

#include <cstdint>

#include "agent/ctl/agent_client.hpp"

namespace phonefarm::ctl {

struct LogChunk {
  std::uint64_t next_offset = 0;
  std::uint64_t log_size = 0;
  bool more = false;

  // More is there already (the answer was capped): read on without waiting.
  bool capped() const { return next_offset < log_size; }
};

// The headers of a 200 answer to a read from `offset`. Throws Exit{1} when
// one is missing or not a number, or when next_offset goes back before `offset`.
LogChunk readLogChunk(const HttpResponse& r, std::uint64_t offset);

}  // namespace phonefarm::ctl
