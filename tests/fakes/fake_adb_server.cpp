// fake-adb-server: what else may hold the adb server's port, for the adb
// server fault tests. Either an adb server of another version (it speaks the
// smart-socket host protocol: 4 hex digits of length + service, answered
// "OKAY" [+ 4 hex digits of length + payload] or "FAIL" + length + message;
// see protocol.txt and SERVICES.TXT of the adb sources), or a program that is
// not adb at all (a port hog).
//
//   fake-adb-server --port N (--version HEX | --hog garbage|close|silent)
//                   [--take-over SECONDS]
//
// --version HEX   host:version -> OKAY + "0004" + HEX; host:kill -> OKAY, then
//                 exit 0 (what a real server does, and what the adb client of
//                 another version sends); host:devices[-l] -> an empty list;
//                 host:track-devices[-l] -> an empty list, then the stream is
//                 held open; anything else -> FAIL "unknown host service".
// --hog garbage   every connection gets a line of SSH banner, then is closed
// --hog close     every connection is closed at once
// --hog silent    every connection is held open, unanswered
// --take-over S   the port may be busy: retry the bind every 2 ms for up to S
//                 seconds (to take the port the moment a real server frees it)
//
// Lines on stdout, for the tests to wait on and count:
//   fake-adb-server waiting port=N        (--take-over: before the first bind)
//   fake-adb-server listening port=N
//   fake-adb-server accepted n=K ms=T     (T: ms since the listener was bound)
//   fake-adb-server request service=S
//   fake-adb-server killed                (host:kill; it exits right after)
// SIGTERM/SIGINT: exit 0. Standard library + POSIX only; one thread per
// connection.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace {

std::mutex g_out_mutex;
std::chrono::steady_clock::time_point g_bound_at;

void say(const char* format, ...) __attribute__((format(printf, 1, 2)));
void say(const char* format, ...) {
  std::lock_guard lock(g_out_mutex);
  va_list args;
  va_start(args, format);
  std::vprintf(format, args);
  va_end(args);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

bool sendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::optional<std::string> readExact(int fd, std::size_t n) {
  std::string out(n, '\0');
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::recv(fd, out.data() + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    got += static_cast<std::size_t>(r);
  }
  return out;
}

std::string framed(std::string_view payload) {
  char length[8];
  std::snprintf(length, sizeof length, "%04zx", payload.size());
  return std::string(length) + std::string(payload);
}

// Blocks until the peer closes (or errs); whatever it sends is dropped.
void holdUntilClosed(int fd) {
  char buffer[256];
  for (;;) {
    const ssize_t r = ::recv(fd, buffer, sizeof buffer, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return;
  }
}

void serveAdb(int fd, const std::string& version) {
  auto length = readExact(fd, 4);
  if (!length) return;
  char* end = nullptr;
  const unsigned long n = std::strtoul(length->c_str(), &end, 16);
  if (end != length->c_str() + 4 || n > 0xffff) return;
  auto service = readExact(fd, n);
  if (!service) return;
  say("fake-adb-server request service=%s", service->c_str());
  if (*service == "host:version") {
    sendAll(fd, "OKAY" + framed(version));
  } else if (*service == "host:kill") {
    sendAll(fd, "OKAY");
    say("fake-adb-server killed");
    std::_Exit(0);
  } else if (*service == "host:devices" || *service == "host:devices-l") {
    sendAll(fd, "OKAY" + framed(""));
  } else if (*service == "host:track-devices" || *service == "host:track-devices-l") {
    if (sendAll(fd, "OKAY" + framed(""))) holdUntilClosed(fd);
  } else {
    sendAll(fd, "FAIL" + framed("unknown host service"));
  }
}

void serve(int fd, const std::string& version, const std::string& hog) {
  if (!version.empty()) {
    serveAdb(fd, version);
  } else if (hog == "garbage") {
    sendAll(fd, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
  } else if (hog == "silent") {
    holdUntilClosed(fd);
  }
  ::close(fd);
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "fake-adb-server: %s\nusage: fake-adb-server --port N (--version HEX | --hog garbage|close|silent) "
               "[--take-over SECONDS]\n",
               why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int port = -1;
  std::string version;
  std::string hog;
  int take_over_s = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) usage("missing value");
    const char* value = argv[++i];
    if (arg == "--port") {
      port = std::atoi(value);
    } else if (arg == "--version") {
      version = value;
    } else if (arg == "--hog") {
      hog = value;
    } else if (arg == "--take-over") {
      take_over_s = std::atoi(value);
    } else {
      usage("unknown option");
    }
  }
  if (port <= 0 || port > 65535) usage("--port 1..65535 is required");
  if (version.empty() == hog.empty()) usage("one of --version or --hog is required");
  if (!version.empty() && version.size() != 4) usage("--version takes 4 hex digits");
  if (!hog.empty() && hog != "garbage" && hog != "close" && hog != "silent") usage("unknown --hog mode");

  struct sigaction quit {};
  quit.sa_handler = [](int) { std::_Exit(0); };
  ::sigaction(SIGTERM, &quit, nullptr);
  ::sigaction(SIGINT, &quit, nullptr);

  const int listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(take_over_s);
  if (take_over_s > 0) say("fake-adb-server waiting port=%d", port);
  while (::bind(listen_fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    if (errno != EADDRINUSE || std::chrono::steady_clock::now() >= give_up) {
      std::fprintf(stderr, "fake-adb-server: bind 127.0.0.1:%d: %s\n", port, std::strerror(errno));
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (::listen(listen_fd, 64) != 0) {
    std::fprintf(stderr, "fake-adb-server: listen: %s\n", std::strerror(errno));
    return 1;
  }
  g_bound_at = std::chrono::steady_clock::now();
  say("fake-adb-server listening port=%d", port);
  for (long n = 1;; ++n) {
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      --n;
      continue;
    }
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - g_bound_at).count();
    say("fake-adb-server accepted n=%ld ms=%lld", n, static_cast<long long>(ms));
    std::thread([fd, version, hog] { serve(fd, version, hog); }).detach();
  }
}
