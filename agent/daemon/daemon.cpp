// The daemon's wiring and lifecycle.
#include "agent/daemon/daemon.hpp"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <csignal>

#include "agent/api/api_handler.hpp"
#include "agent/cancel/cancel_service.hpp"
#include "agent/daemon/state_dir_lock.hpp"
#include "agent/http/auth.hpp"
#include "agent/http/http_server.hpp"
#include "common/config/tokens.hpp"
#include "common/store/store.hpp"

namespace phonefarm {

int Daemon::run() {
  std::signal(SIGPIPE, SIG_IGN);
  StateDirLock lock(config_.state_dir);
  http::TokenRegistry tokens(TokenSet::loadFile(config_.tokens_file));
  spdlog::info("auth.tokens_loaded file={} tokens={}", config_.tokens_file.string(), tokens.size());
  if (tokens.size() == 0)
    spdlog::warn("auth.no_tokens file={} every authenticated request will get 401", config_.tokens_file.string());

  store::StoreOptions store_options;
  store_options.path = config_.state_dir / "agent.db";
  store::Store store(store_options);
  spdlog::info("store.open path={} schema_version={}", (config_.state_dir / "agent.db").string(),
               store.schemaVersion());

  SystemClock clock;
  cancel::NoExecutorTerminator terminator;
  cancel::CancelService cancels(store, clock, terminator);

  std::unique_ptr<api::ApiHandler> api;
  http::HttpServer server(
      http::makeHttpServerOptions(config_.listen, config_.http),
      [&api](http::HttpRequest req, http::Responder respond) { api->handle(std::move(req), std::move(respond)); });
  api = std::make_unique<api::ApiHandler>(
      api::ApiServices{config_, store, cancels, clock, tokens,
                       [&server](std::function<void()> fn) { server.post(std::move(fn)); }, nullptr});

  auto stop = [&server](const char* why) {
    spdlog::info("agent.stopping signal={}", why);
    ::sd_notify(0, "STOPPING=1");
    server.beginShutdown();
  };
  server.addSignalHandler(SIGTERM, [stop] { stop("SIGTERM"); });
  server.addSignalHandler(SIGINT, [stop] { stop("SIGINT"); });
  server.addSignalHandler(SIGHUP, [this, &tokens] {
    try {
      tokens.replace(TokenSet::loadFile(config_.tokens_file));
      spdlog::info("auth.tokens_reloaded file={} tokens={}", config_.tokens_file.string(), tokens.size());
    } catch (const std::exception& e) {
      spdlog::error("auth.tokens_reload_failed keeping the previous tokens: {}", e.what());
    }
    spdlog::default_logger()->flush();
  });

  server.start();
  ::sd_notify(0, "READY=1");
  spdlog::info("agent.ready version={} phones={}", PHONEFARM_VERSION, config_.phones.size());
  spdlog::default_logger()->flush();  // operators and supervisors wait for these lines
  server.run();
  store.stop();  // every queued job runs and commits before we exit
  const auto stats = store.stats();
  spdlog::info("store.stats jobs={} commits={} max_batch={} checkpoints={}", stats.jobs, stats.commits, stats.max_batch,
               stats.checkpoints);
  spdlog::info("agent.stopped");
  spdlog::default_logger()->flush();
  return 0;
}

}  // namespace phonefarm
