// epoll load generator; see load_client.hpp.
#include "tests/bench/load_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace phonefarm::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Conn {
  int fd = -1;
  std::string out;
  std::size_t out_off = 0;
  std::string in;
  Clock::time_point started;
  bool busy = false;
};

int connectTo(const std::string& host, std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("connect: " + std::string(std::strerror(errno)));
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Returns the length of a complete response at the start of `in` (and its
// status), or 0 when more bytes are needed.
std::size_t completeResponse(const std::string& in, int& status) {
  const auto end = in.find("\r\n\r\n");
  if (end == std::string::npos) return 0;
  status = std::atoi(in.c_str() + 9);
  std::size_t length = 0;
  for (std::size_t pos = in.find("\r\n"); pos < end; pos = in.find("\r\n", pos + 2)) {
    if (::strncasecmp(in.c_str() + pos + 2, "content-length:", 15) == 0) {
      length = std::strtoul(in.c_str() + pos + 17, nullptr, 10);
    }
  }
  return in.size() >= end + 4 + length ? end + 4 + length : 0;
}

}  // namespace

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto idx = static_cast<std::size_t>(p / 100.0 * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(idx, values.size() - 1)];
}

LoadResult runLoad(const std::string& host, std::uint16_t port, std::size_t connections, std::size_t total,
                   const RequestFactory& make_request) {
  LoadResult result;
  result.latencies_us.reserve(total);
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  std::vector<Conn> conns(std::min(connections, total));
  std::size_t next = 0;
  std::size_t done = 0;
  auto send_next = [&](Conn& c) {
    if (next >= total) {
      c.busy = false;
      return;
    }
    c.out = make_request(next++);
    c.out_off = 0;
    c.busy = true;
    c.started = Clock::now();
    while (c.out_off < c.out.size()) {
      const ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send failed");
      c.out_off += static_cast<std::size_t>(n);
    }
  };
  const auto start = Clock::now();
  for (std::size_t i = 0; i < conns.size(); ++i) {
    conns[i].fd = connectTo(host, port);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    send_next(conns[i]);
  }
  std::vector<epoll_event> events(conns.size());
  char buf[65536];
  while (done < total) {
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 30'000);
    if (n <= 0) throw std::runtime_error("load: no response within 30 s");
    for (int i = 0; i < n; ++i) {
      Conn& c = conns[events[i].data.u64];
      const ssize_t got = ::recv(c.fd, buf, sizeof buf, 0);
      if (got <= 0) throw std::runtime_error("load: server closed a connection");
      c.in.append(buf, static_cast<std::size_t>(got));
      int status = 0;
      while (std::size_t len = completeResponse(c.in, status)) {
        c.in.erase(0, len);
        result.latencies_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - c.started).count());
        result.statuses.push_back(status);
        ++done;
        send_next(c);
      }
    }
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& c : conns) ::close(c.fd);
  ::close(ep);
  return result;
}

}  // namespace phonefarm::bench
