// The table behind signalName/signalNumber. Written out rather than taken
// from sigabbrev_np() so the spelling the API promises does not depend on the
// libc version, and so aliases (SIGIOT, SIGPOLL) never leak into stored data.
#include "agent/exec/signal_names.hpp"

#include <csignal>
#include <string>

namespace phonefarm::exec {
namespace {

struct SignalEntry {
  int number;
  std::string_view name;
};

constexpr SignalEntry kSignals[] = {
    {SIGHUP, "SIGHUP"},       {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"},   {SIGILL, "SIGILL"},   {SIGTRAP, "SIGTRAP"},
    {SIGABRT, "SIGABRT"},     {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},     {SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"},
    {SIGSEGV, "SIGSEGV"},     {SIGUSR2, "SIGUSR2"}, {SIGPIPE, "SIGPIPE"},   {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"},
    {SIGSTKFLT, "SIGSTKFLT"}, {SIGCHLD, "SIGCHLD"}, {SIGCONT, "SIGCONT"},   {SIGSTOP, "SIGSTOP"}, {SIGTSTP, "SIGTSTP"},
    {SIGTTIN, "SIGTTIN"},     {SIGTTOU, "SIGTTOU"}, {SIGURG, "SIGURG"},     {SIGXCPU, "SIGXCPU"}, {SIGXFSZ, "SIGXFSZ"},
    {SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"}, {SIGWINCH, "SIGWINCH"}, {SIGIO, "SIGIO"},     {SIGPWR, "SIGPWR"},
    {SIGSYS, "SIGSYS"},
};

}  // namespace

std::string signalName(int sig) {
  for (const auto& entry : kSignals) {
    if (entry.number == sig) return std::string(entry.name);
  }
  // SIGRTMIN is a function call in glibc (it reserves the first few for
  // threads), so realtime names are relative to what this process sees.
  if (sig >= SIGRTMIN && sig <= SIGRTMAX) {
    return sig == SIGRTMIN ? "SIGRTMIN" : "SIGRTMIN+" + std::to_string(sig - SIGRTMIN);
  }
  return "SIG" + std::to_string(sig);
}

std::optional<int> signalNumber(std::string_view name) {
  for (const auto& entry : kSignals) {
    if (entry.name == name) return entry.number;
  }
  return std::nullopt;
}

}  // namespace phonefarm::exec
