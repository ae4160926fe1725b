// fake-adbd: a fake Android phone for tests. It speaks the device side of the
// ADB wire protocol (what adbd speaks) over TCP, so that a real adb server sees
// it as a device after `adb connect 127.0.0.1:PORT`, and answers `shell:`
// requests from a fixed table instead of running anything.
//
//   fake-adbd --port N [--bind ADDR] [--shell 'CMD=OUTPUT']... [--stats FILE]
//             [--max-payload BYTES] [--control FILE]
//
// Faults for the self-healing tests, switched at run time: write one line to
// the --control file and send SIGUSR1; the fake reads it and applies it:
//   none        back to normal (a running fault ends)
//   drop N      every connection is cut now, new ones are closed at once for N s
//   silent N    every connection is cut now; for N s new sessions get no answer
//   auth        every connection is cut now; new sessions are answered with
//               AUTH (the server shows the phone `unauthorized`) until `none`
//   shell_hang  shell streams are opened but never answered, until the next
//               CNXN (a new session: as if adbd restarted)
//   flap N      N times: cut every connection, wait for the server's next
//               handshake (up to 30 s), then 1 s
//
// Protocol summary (see LineageOS/android_packages_modules_adb, protocol.txt
// and SERVICES.TXT): every message is a 24-byte header of six little-endian
// uint32 (command, arg0, arg1, data_length, data_check = byte sum of the
// payload, magic = command ^ 0xffffffff) followed by data_length bytes.
//   host CNXN(version, maxdata, "host::...")  -> device CNXN(version, maxdata,
//       "device::ro.product.name=...;features=...") (no AUTH: like a device
//       with ro.adb.secure=0, so the server needs no key)
//   host OPEN(host_id, 0, "shell:CMD")        -> OKAY(our_id, host_id),
//       WRTE(our_id, host_id, output) one chunk at a time, each acknowledged
//       by the host's OKAY(host_id, our_id) before the next, then
//       CLSE(our_id, host_id)
//   host OPEN of any other service            -> CLSE(0, host_id)
//   host WRTE (stdin)                         -> OKAY (data discarded)
// shell_v2 is deliberately not advertised: the server then uses plain
// `shell:` streams (raw stdout, no exit code), which is all this fake frames.
//
// Standard library + POSIX only. One thread per TCP connection, each a fresh
// ADB session. SIGTERM/SIGINT: shut every socket down and exit 0.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace {

constexpr std::uint32_t kCnxn = 0x4e584e43;
constexpr std::uint32_t kAuth = 0x48545541;
constexpr std::uint32_t kOpen = 0x4e45504f;
constexpr std::uint32_t kOkay = 0x59414b4f;
constexpr std::uint32_t kClse = 0x45534c43;
constexpr std::uint32_t kWrte = 0x45545257;
constexpr std::uint32_t kStls = 0x534c5453;

// 0x01000001: the host may skip verifying data_check (we still fill it in,
// because the host checks our first CNXN before it knows our version).
constexpr std::uint32_t kVersion = 0x01000001;
constexpr std::uint32_t kDefaultMaxPayload = 256 * 1024;
// The largest payload we accept from the host: its own limit is 1 MiB.
constexpr std::uint32_t kMaxIncomingPayload = 1024 * 1024;
constexpr std::size_t kHeaderSize = 24;

struct Options {
  std::uint16_t port = 0;
  bool port_given = false;
  std::string bind = "127.0.0.1";
  std::map<std::string, std::string> shell;
  std::string stats_file;
  std::uint32_t max_payload = kDefaultMaxPayload;
  std::string control_file;
};

struct Packet {
  std::uint32_t command = 0;
  std::uint32_t arg0 = 0;
  std::uint32_t arg1 = 0;
  std::string payload;
};

// ---- process-wide state ---------------------------------------------------

Options g_options;
std::atomic<bool> g_stopping{false};
int g_listen_fd = -1;

std::mutex g_conn_mutex;  // guards the three below
std::condition_variable g_conn_changed;
std::set<int> g_conn_fds;  // open connection sockets, for shutdown on SIGTERM
int g_active_threads = 0;

std::mutex g_stats_mutex;  // guards the counters and the stats file
unsigned long g_connections = 0;
unsigned long g_handshakes = 0;

std::mutex g_log_mutex;

// The fault in force (--control); guarded by g_fault_mutex.
enum class Fault { kNone, kDrop, kSilent, kUnauthorized };
std::mutex g_fault_mutex;
Fault g_fault = Fault::kNone;
std::chrono::steady_clock::time_point g_fault_until;  // kDrop, kSilent
std::atomic<bool> g_shell_hang{false};
std::atomic<unsigned long> g_fault_generation{0};  // a new fault ends a running flap

Fault currentFault() {
  std::lock_guard lock(g_fault_mutex);
  if ((g_fault == Fault::kDrop || g_fault == Fault::kSilent) && std::chrono::steady_clock::now() >= g_fault_until) {
    g_fault = Fault::kNone;
  }
  return g_fault;
}

__attribute__((format(printf, 1, 2))) void logLine(const char* format, ...) {
  std::lock_guard lock(g_log_mutex);
  std::fputs("fake-adbd: ", stderr);
  va_list args;
  va_start(args, format);
  std::vfprintf(stderr, format, args);
  va_end(args);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

// Rewrites the stats file atomically (write a temporary, rename over). Caller
// holds g_stats_mutex.
void writeStatsLocked() {
  if (g_options.stats_file.empty()) return;
  const std::string tmp = g_options.stats_file + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "connections=" << g_connections << " handshakes=" << g_handshakes << "\n";
    out.flush();
    if (!out) {
      logLine("cannot write stats file %s", tmp.c_str());
      return;
    }
  }
  if (std::rename(tmp.c_str(), g_options.stats_file.c_str()) != 0) {
    logLine("cannot rename %s: %s", tmp.c_str(), std::strerror(errno));
  }
}

unsigned long countConnection() {
  std::lock_guard lock(g_stats_mutex);
  ++g_connections;
  writeStatsLocked();
  return g_connections;
}

void countHandshake() {
  std::lock_guard lock(g_stats_mutex);
  ++g_handshakes;
  writeStatsLocked();
}

// ---- wire encoding --------------------------------------------------------

void putU32(unsigned char* out, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<unsigned char>(value >> (8 * i));
}

std::uint32_t getU32(const unsigned char* in) {
  std::uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | in[i];
  return value;
}

std::uint32_t byteSum(std::string_view data) {
  std::uint32_t sum = 0;
  for (const char c : data) sum += static_cast<unsigned char>(c);
  return sum;
}

std::string commandName(std::uint32_t command) {
  std::string name;
  for (int i = 0; i < 4; ++i) {
    const char c = static_cast<char>(command >> (8 * i));
    name += (c >= ' ' && c < 127) ? c : '?';
  }
  return name;
}

bool sendAll(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

bool recvAll(int fd, void* buffer, std::size_t size) {
  auto* out = static_cast<char*>(buffer);
  while (size > 0) {
    const ssize_t n = ::recv(fd, out, size, 0);
    if (n == 0) return false;  // EOF
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    out += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

bool sendPacket(int fd, std::uint32_t command, std::uint32_t arg0, std::uint32_t arg1, std::string_view payload = {}) {
  std::string buffer(kHeaderSize, '\0');
  auto* header = reinterpret_cast<unsigned char*>(buffer.data());
  putU32(header + 0, command);
  putU32(header + 4, arg0);
  putU32(header + 8, arg1);
  putU32(header + 12, static_cast<std::uint32_t>(payload.size()));
  putU32(header + 16, byteSum(payload));
  putU32(header + 20, command ^ 0xffffffffU);
  buffer.append(payload);
  return sendAll(fd, buffer.data(), buffer.size());
}

// Reads one message; nullopt on EOF, error or a malformed header (the caller
// then drops the connection, as adbd does).
std::optional<Packet> readPacket(int fd, unsigned long conn_id) {
  unsigned char header[kHeaderSize];
  if (!recvAll(fd, header, sizeof header)) return std::nullopt;
  Packet p;
  p.command = getU32(header + 0);
  p.arg0 = getU32(header + 4);
  p.arg1 = getU32(header + 8);
  const std::uint32_t length = getU32(header + 12);
  const std::uint32_t magic = getU32(header + 20);
  if (magic != (p.command ^ 0xffffffffU)) {
    logLine("conn #%lu: bad magic %08x for command %08x, dropping", conn_id, magic, p.command);
    return std::nullopt;
  }
  if (length > kMaxIncomingPayload) {
    logLine("conn #%lu: payload of %u bytes is too large, dropping", conn_id, length);
    return std::nullopt;
  }
  p.payload.resize(length);
  if (length > 0 && !recvAll(fd, p.payload.data(), length)) return std::nullopt;
  // data_check is not verified: hosts at version >= 0x01000001 send 0.
  return p;
}

// ---- services -------------------------------------------------------------

std::string_view stripTrailingNuls(std::string_view s) {
  while (!s.empty() && s.back() == '\0') s.remove_suffix(1);
  return s;
}

// "shell:CMD", "shell,v2,raw:CMD", "exec:CMD" -> CMD.
std::optional<std::string> shellCommand(std::string_view service) {
  for (const std::string_view prefix : {std::string_view("shell"), std::string_view("exec")}) {
    if (service.substr(0, prefix.size()) != prefix) continue;
    const std::string_view rest = service.substr(prefix.size());
    if (rest.empty() || (rest.front() != ':' && rest.front() != ',')) continue;
    const auto colon = rest.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    return std::string(rest.substr(colon + 1));
  }
  return std::nullopt;
}

std::string shellOutput(const std::string& command) {
  const auto it = g_options.shell.find(command);
  if (it != g_options.shell.end()) return it->second;
  return "fake-adbd: " + command + ": not found\n";
}

// One device-side stream: the output still to send and whether a WRTE is
// waiting for the host's OKAY.
struct Stream {
  std::uint32_t remote_id = 0;
  std::string output;
  std::size_t sent = 0;
};

class Session {
 public:
  Session(int fd, unsigned long id) : fd_(fd), id_(id) {}

  void run() {
    while (auto packet = readPacket(fd_, id_)) {
      if (currentFault() == Fault::kSilent) continue;  // read, never answer
      if (!handle(*packet)) break;
    }
  }

 private:
  bool handle(const Packet& p) {
    switch (p.command) {
      case kCnxn:
        return handleConnect(p);
      case kOpen:
        return handleOpen(p);
      case kOkay:
        return handleOkay(p);
      case kWrte:
        return handleWrite(p);
      case kClse:
        streams_.erase(p.arg1);
        return true;
      case kAuth:
        // A signature (2) gets a new token, as from a device that knows no
        // key; the host's public key (3) waits for a user who never comes.
        if (currentFault() == Fault::kUnauthorized && p.arg0 == 2)
          return sendPacket(fd_, kAuth, 1, 0, std::string(20, 'Z'));
        [[fallthrough]];
      case kStls:
        // We never ask for either; ignore rather than drop.
        logLine("conn #%lu: ignoring %s", id_, commandName(p.command).c_str());
        return true;
      default:
        logLine("conn #%lu: ignoring unknown command %s (%08x)", id_, commandName(p.command).c_str(), p.command);
        return true;
    }
  }

  bool handleConnect(const Packet& p) {
    // A (re)connect on the same socket starts a fresh session.
    streams_.clear();
    if (currentFault() == Fault::kUnauthorized) {
      // Like a device with ro.adb.secure=1 whose user has not accepted the
      // host's key: AUTH(TOKEN) now, and again for every signature.
      logLine("conn #%lu: CNXN answered with AUTH (fault)", id_);
      return sendPacket(fd_, kAuth, 1, 0, std::string(20, 'Z'));
    }
    g_shell_hang = false;
    const std::uint32_t host_max = p.arg1 == 0 ? g_options.max_payload : p.arg1;
    send_max_ = std::min(g_options.max_payload, host_max);
    online_ = true;
    const std::string banner =
        "device::ro.product.name=fake;ro.product.model=FakePhone;ro.product.device=fake;features=cmd";
    logLine("conn #%lu: CNXN version=%08x maxdata=%u banner='%s'", id_, p.arg0, p.arg1,
            std::string(stripTrailingNuls(p.payload)).c_str());
    countHandshake();  // before replying: a test that saw the device online sees the count
    return sendPacket(fd_, kCnxn, kVersion, g_options.max_payload, banner);
  }

  bool handleOpen(const Packet& p) {
    if (!online_ || p.arg0 == 0 || p.arg1 != 0) return true;
    const std::string_view service = stripTrailingNuls(p.payload);
    const auto command = shellCommand(service);
    if (!command) {
      logLine("conn #%lu: OPEN '%s': unsupported service, closing", id_, std::string(service).c_str());
      return sendPacket(fd_, kClse, 0, p.arg0);
    }
    const std::uint32_t local_id = next_id_++;
    logLine("conn #%lu: OPEN '%s' -> stream %u", id_, std::string(service).c_str(), local_id);
    if (g_shell_hang) return sendPacket(fd_, kOkay, local_id, p.arg0);  // opened, never answered
    Stream& stream = streams_[local_id];
    stream.remote_id = p.arg0;
    stream.output = shellOutput(*command);
    if (!sendPacket(fd_, kOkay, local_id, p.arg0)) return false;
    return pump(local_id);
  }

  bool handleOkay(const Packet& p) {
    if (!online_) return true;
    const auto it = streams_.find(p.arg1);
    if (it == streams_.end() || it->second.remote_id != p.arg0) return true;
    return pump(p.arg1);
  }

  bool handleWrite(const Packet& p) {
    if (!online_) return true;
    const auto it = streams_.find(p.arg1);
    if (it == streams_.end() || it->second.remote_id != p.arg0) return true;
    // Input (stdin) is discarded, but acknowledged so the host may send more.
    return sendPacket(fd_, kOkay, p.arg1, p.arg0);
  }

  // Sends the next chunk of the stream's output, or CLSE once everything has
  // been sent and acknowledged. Called after OKAY(OPEN) and each host OKAY.
  bool pump(std::uint32_t local_id) {
    Stream& stream = streams_.at(local_id);
    const std::uint32_t remote_id = stream.remote_id;
    if (stream.sent < stream.output.size()) {
      const std::size_t size = std::min<std::size_t>(send_max_, stream.output.size() - stream.sent);
      const std::string_view chunk = std::string_view(stream.output).substr(stream.sent, size);
      stream.sent += size;
      return sendPacket(fd_, kWrte, local_id, remote_id, chunk);
    }
    streams_.erase(local_id);
    return sendPacket(fd_, kClse, local_id, remote_id);
  }

  int fd_;
  unsigned long id_;
  bool online_ = false;
  std::uint32_t send_max_ = kDefaultMaxPayload;
  std::uint32_t next_id_ = 1;
  std::map<std::uint32_t, Stream> streams_;  // by our (local) id
};

void serveConnection(int fd, unsigned long id, std::string peer) {
  Session(fd, id).run();
  logLine("disconnect #%lu from %s", id, peer.c_str());
  std::lock_guard lock(g_conn_mutex);
  g_conn_fds.erase(fd);
  ::close(fd);  // under the lock: the signal thread never shuts down a reused fd
  --g_active_threads;
  g_conn_changed.notify_all();
}

std::string peerName(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

// ---- startup --------------------------------------------------------------

[[noreturn]] void usage(const char* error) {
  if (error != nullptr) std::fprintf(stderr, "fake-adbd: %s\n", error);
  std::fprintf(stderr,
               "usage: fake-adbd --port N [--bind ADDR] [--shell 'CMD=OUTPUT']... [--stats FILE]\n"
               "                 [--max-payload BYTES] [--control FILE]\n"
               "  --port N           TCP port to listen on (0: ephemeral; the port is printed)\n"
               "  --bind ADDR        IPv4 or IPv6 address to listen on (default 127.0.0.1)\n"
               "  --shell CMD=OUTPUT `shell:CMD` answers OUTPUT verbatim (split at the first '=';\n"
               "                     no escapes). Unknown commands answer\n"
               "                     'fake-adbd: CMD: not found\\n'. Repeatable.\n"
               "  --stats FILE       rewritten atomically as 'connections=N handshakes=M'\n"
               "  --max-payload N    largest payload advertised and sent (default 262144)\n"
               "  --control FILE     on SIGUSR1, apply the fault named in FILE (see the source)\n");
  std::exit(2);
}

std::uint32_t parseNumber(const char* text, std::uint32_t max, const char* what) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value > max) {
    const std::string error = std::string("bad ") + what + ": " + text;
    usage(error.c_str());
  }
  return static_cast<std::uint32_t>(value);
}

Options parseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") usage(nullptr);
    if (i + 1 >= argc) usage(("missing value for " + std::string(arg)).c_str());
    const char* value = argv[++i];
    if (arg == "--port") {
      options.port = static_cast<std::uint16_t>(parseNumber(value, 65535, "port"));
      options.port_given = true;
    } else if (arg == "--bind") {
      options.bind = value;
    } else if (arg == "--shell") {
      const std::string_view entry = value;
      const auto eq = entry.find('=');
      if (eq == std::string_view::npos) usage("--shell wants CMD=OUTPUT");
      options.shell[std::string(entry.substr(0, eq))] = std::string(entry.substr(eq + 1));
    } else if (arg == "--control") {
      options.control_file = value;
    } else if (arg == "--stats") {
      options.stats_file = value;
    } else if (arg == "--max-payload") {
      options.max_payload = parseNumber(value, kMaxIncomingPayload, "max payload");
      if (options.max_payload < 1024) usage("--max-payload must be at least 1024");
    } else {
      usage(("unknown option " + std::string(arg)).c_str());
    }
  }
  if (!options.port_given) usage("--port is required");
  return options;
}

int listenOn(const std::string& address, std::uint16_t port) {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  auto* in = reinterpret_cast<sockaddr_in*>(&addr);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (::inet_pton(AF_INET, address.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    addr_len = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, address.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    addr_len = sizeof(sockaddr_in6);
  } else {
    usage(("bad --bind address " + address).c_str());
  }
  const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0 || ::listen(fd, 64) != 0) {
    const int error = errno;
    ::close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

std::uint16_t boundPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

// Waits for SIGTERM/SIGINT (blocked in every thread), then shuts every socket
// down: accept() and each session's recv() return, and the process exits 0.
// SIGUSR1 applies the --control file.
void applyControl();
void signalThread(sigset_t signals) {
  int sig = 0;
  for (;;) {
    if (::sigwait(&signals, &sig) != 0) continue;
    if (sig != SIGUSR1) break;
    applyControl();
  }
  logLine("caught signal %d, shutting down", sig);
  g_stopping = true;
  std::lock_guard lock(g_conn_mutex);
  for (const int fd : g_conn_fds) ::shutdown(fd, SHUT_RDWR);
  ::shutdown(g_listen_fd, SHUT_RDWR);
}

// Cuts every open connection (the sessions see EOF and end).
void dropAll() {
  std::lock_guard lock(g_conn_mutex);
  for (const int fd : g_conn_fds) ::shutdown(fd, SHUT_RDWR);
}

unsigned long handshakes() {
  std::lock_guard lock(g_stats_mutex);
  return g_handshakes;
}

void flap(unsigned times, unsigned long generation) {
  for (unsigned i = 0; i < times && !g_stopping && g_fault_generation == generation; ++i) {
    const unsigned long before = handshakes();
    logLine("fault: flap %u of %u", i + 1, times);
    dropAll();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (handshakes() == before && std::chrono::steady_clock::now() < deadline && !g_stopping) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  logLine("fault: flap done");
}

void applyControl() {
  std::ifstream in(g_options.control_file);
  std::string mode;
  unsigned seconds = 0;
  in >> mode >> seconds;
  logLine("fault: %s %u", mode.c_str(), seconds);
  const unsigned long generation = ++g_fault_generation;
  g_shell_hang = false;
  {
    std::lock_guard lock(g_fault_mutex);
    g_fault = Fault::kNone;
    g_fault_until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    if (mode == "drop") g_fault = Fault::kDrop;
    if (mode == "silent") g_fault = Fault::kSilent;
    if (mode == "auth") g_fault = Fault::kUnauthorized;
  }
  if (mode == "drop" || mode == "silent" || mode == "auth") dropAll();
  if (mode == "shell_hang") g_shell_hang = true;
  if (mode == "flap") std::thread(flap, seconds, generation).detach();
}

}  // namespace

int main(int argc, char** argv) {
  g_options = parseOptions(argc, argv);

  sigset_t signals;
  ::sigemptyset(&signals);
  ::sigaddset(&signals, SIGTERM);
  ::sigaddset(&signals, SIGINT);
  ::sigaddset(&signals, SIGUSR1);
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // inherited by every thread started below
  ::signal(SIGPIPE, SIG_IGN);

  g_listen_fd = listenOn(g_options.bind, g_options.port);
  if (g_listen_fd < 0) {
    std::fprintf(stderr, "fake-adbd: cannot listen on %s:%u: %s\n", g_options.bind.c_str(), g_options.port,
                 std::strerror(errno));
    return 1;
  }
  {
    std::lock_guard lock(g_stats_mutex);
    writeStatsLocked();
  }
  std::thread(signalThread, signals).detach();

  std::printf("fake-adbd listening port=%u\n", boundPort(g_listen_fd));
  std::fflush(stdout);

  while (!g_stopping) {
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof peer;
    const int fd = ::accept4(g_listen_fd, reinterpret_cast<sockaddr*>(&peer), &peer_len, SOCK_CLOEXEC);
    if (fd < 0) {
      if (g_stopping) break;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      logLine("accept: %s", std::strerror(errno));
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // back off, then retry
        continue;
      }
      break;
    }
    if (currentFault() == Fault::kDrop) {  // "refused": closed before a byte is read
      ::close(fd);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const std::string name = peerName(peer);
    {
      std::lock_guard lock(g_conn_mutex);
      if (g_stopping) {
        ::close(fd);
        break;
      }
      g_conn_fds.insert(fd);
      ++g_active_threads;
    }
    const unsigned long id = countConnection();
    logLine("connection #%lu from %s", id, name.c_str());
    std::thread(serveConnection, fd, id, name).detach();
  }

  // Sessions end as soon as their sockets are shut down; do not hang if one
  // does not. _Exit: detached sessions may still run, so no static destructors.
  const bool clean = g_stopping;
  {
    std::unique_lock lock(g_conn_mutex);
    g_conn_changed.wait_for(lock, std::chrono::seconds(2), [] { return g_active_threads == 0; });
  }
  ::close(g_listen_fd);
  logLine("exiting");
  std::fflush(nullptr);
  std::_Exit(clean ? 0 : 1);
}
