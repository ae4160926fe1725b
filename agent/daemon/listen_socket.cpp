// takeActivatedListener: see listen_socket.hpp. libsystemd reads LISTEN_PID
// and LISTEN_FDS; the address check compares the kernel's view of the socket
// (getsockname) with `listen` parsed as an IP literal.
#include "agent/daemon/listen_socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace phonefarm {
namespace {

std::string formatAddress(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(addr);
    ::inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(in.sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(addr);
    ::inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(in6.sin6_port));
  }
  return "?";
}

bool sameAddress(const sockaddr_storage& bound, const ListenAddress& listen) {
  const std::string host = listen.host == "localhost" ? "127.0.0.1" : listen.host;
  if (bound.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(bound);
    in_addr want{};
    if (::inet_pton(AF_INET, host.c_str(), &want) != 1) return false;
    return want.s_addr == in.sin_addr.s_addr && (listen.port == 0 || listen.port == ntohs(in.sin_port));
  }
  if (bound.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(bound);
    in6_addr want{};
    if (::inet_pton(AF_INET6, host.c_str(), &want) != 1) return false;
    return std::memcmp(&want, &in6.sin6_addr, sizeof want) == 0 &&
           (listen.port == 0 || listen.port == ntohs(in6.sin6_port));
  }
  return false;
}

std::string listenText(const ListenAddress& listen) {
  const bool v6 = listen.host.find(':') != std::string::npos;
  return (v6 ? "[" + listen.host + "]" : listen.host) + ":" + std::to_string(listen.port);
}

}  // namespace

std::optional<int> takeActivatedListener(const ListenAddress& listen) {
  const int n = ::sd_listen_fds(1);
  if (n < 0) throw std::system_error(-n, std::generic_category(), "socket activation: sd_listen_fds");
  if (n == 0) return std::nullopt;
  for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; ++fd) {
    ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);  // never to the work
  }
  const int fd = SD_LISTEN_FDS_START;
  if (n > 1) {
    throw ConfigError("socket activation: systemd passed " + std::to_string(n) +
                      " sockets; phonefarm-agent.socket must have exactly one ListenStream=");
  }
  if (::sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, 1, 0) <= 0) {
    throw ConfigError("socket activation: the passed socket is not a listening TCP socket (ListenStream=HOST:PORT)");
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
    throw std::system_error(errno, std::generic_category(), "socket activation: getsockname");
  }
  if (!sameAddress(bound, listen)) {
    throw ConfigError("socket activation: listen = \"" + listenText(listen) +
                      "\" in the config, but systemd passed a socket bound to " + formatAddress(bound) +
                      " (ListenStream= of phonefarm-agent.socket); set both to the same address (README, "
                      "\"Changing the address\")");
  }
  return fd;
}

}  // namespace phonefarm
