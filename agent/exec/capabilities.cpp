// Capabilities through raw syscalls (see the header). The header struct and
// the two data words are the kernel's v3 ABI: 64 bits per set, low word first.
#include "agent/exec/capabilities.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <charconv>
#include <optional>
#include <string_view>
#include <utility>

#include "common/os/file_descriptor.hpp"
#include "common/os/sys_error.hpp"

namespace phonefarm::exec {
namespace {

Result<std::string> readProcSelfStatus() {
  os::FileDescriptor fd(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));
  if (!fd) return os::sysError("open /proc/self/status");
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os::sysError("read /proc/self/status");
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  return text;
}

// The hex value of "<key>:\t<hex>" in /proc/self/status text; nullopt if absent.
Result<std::optional<std::uint64_t>> hexField(std::string_view text, std::string_view key) {
  const std::string prefix = "\n" + std::string(key) + ":";
  auto pos = text.find(prefix);
  if (pos == std::string_view::npos) return std::optional<std::uint64_t>{};
  pos += prefix.size();
  while (pos < text.size() && (text[pos] == '\t' || text[pos] == ' ')) ++pos;
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data() + pos, text.data() + text.size(), value, 16);
  if (ec != std::errc{} || (end != text.data() + text.size() && *end != '\n')) {
    return makeError(ErrorKind::kInternal, "unreadable " + std::string(key) + " line in /proc/self/status");
  }
  return std::optional<std::uint64_t>(value);
}

}  // namespace

Result<CapabilitySets> readCapabilitySets() {
  auto text = readProcSelfStatus();
  if (!text) return text.error();
  const std::string_view status = *text;
  CapabilitySets sets;
  const std::pair<const char*, std::uint64_t*> fields[] = {{"CapInh", &sets.inheritable},
                                                           {"CapPrm", &sets.permitted},
                                                           {"CapEff", &sets.effective},
                                                           {"CapAmb", &sets.ambient}};
  for (const auto& [key, out] : fields) {
    auto value = hexField(status, key);
    if (!value) return value.error();
    // CapAmb appeared in Linux 4.3; the other three are always there.
    if (!value->has_value() && std::string_view(key) != "CapAmb") {
      return makeError(ErrorKind::kInternal, std::string("no ") + key + " line in /proc/self/status");
    }
    *out = value->value_or(0);
  }
  return sets;
}

bool hasEffectiveCapability(int capability) {
  if (capability < 0 || capability >= 64) return false;
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  return (data[capability / 32].effective & (1U << (capability % 32))) != 0;
}

Status dropAllCapabilities() {
  // EINVAL: a kernel without ambient capabilities (< 4.3) has none to clear.
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return os::sysError("prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct none[2] = {};
  if (::syscall(SYS_capset, &header, none) != 0) return os::sysError("capset (clearing every capability)");
  return okStatus();
}

Status checkNoCapabilities() {
  auto sets = readCapabilitySets();
  if (!sets) return sets.error();
  std::string left;
  const std::pair<const char*, std::uint64_t> fields[] = {{"CapInh", sets->inheritable},
                                                          {"CapPrm", sets->permitted},
                                                          {"CapEff", sets->effective},
                                                          {"CapAmb", sets->ambient}};
  for (const auto& [key, value] : fields) {
    if (value == 0) continue;
    char hex[17] = {};
    std::to_chars(hex, hex + 16, value, 16);
    left += std::string(left.empty() ? "" : ", ") + key + "=" + hex;
  }
  if (!left.empty()) return makeError(ErrorKind::kUnavailable, "capabilities left after dropping them: " + left);
  return okStatus();
}

std::string capabilityName(int capability) {
  static constexpr std::pair<int, const char*> kNames[] = {
      {CAP_CHOWN, "CAP_CHOWN"},         {CAP_DAC_OVERRIDE, "CAP_DAC_OVERRIDE"},
      {CAP_FOWNER, "CAP_FOWNER"},       {CAP_KILL, "CAP_KILL"},
      {CAP_SETGID, "CAP_SETGID"},       {CAP_SETUID, "CAP_SETUID"},
      {CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}, {CAP_SYS_PTRACE, "CAP_SYS_PTRACE"}};
  for (const auto& [number, name] : kNames) {
    if (number == capability) return name;
  }
  return "cap_" + std::to_string(capability);
}

}  // namespace phonefarm::exec
