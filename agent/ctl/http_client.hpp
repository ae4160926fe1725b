// phonefarmctl's transport: one blocking HTTP/1.1 request per connection
// (Connection: close) over Boost.Beast, every step — resolve aside — bounded
// by one overall deadline, the answer read within HttpLimits. https:// URLs
// run the same exchange over TLS 1.2 or newer: the certificate verified
// against --cacert or the system store, and the URL's host name or IP address
// checked against it. Beast's headers stay inside http_client.cpp.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/ctl/http_response.hpp"
#include "agent/ctl/url.hpp"

namespace phonefarm::ctl {

struct TlsClientOptions {
  // PEM file of the CA certificate(s) to trust; "" = the system store.
  std::string ca_file;
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Sends one request and reads the whole response before `timeout` from the
// call (TLS handshake included). `target` is the path and query (it is
// appended to url.base_path). Throws TransportError (a failed TLS handshake
// too: "TLS handshake with HOST:PORT failed: certificate verify failed
// (...)"); std::invalid_argument for a bad method or a header with CR/LF.
HttpResponse httpRequest(const Url& url, std::string_view method, std::string_view target, std::string_view body,
                         const HeaderList& headers, std::chrono::milliseconds timeout, const HttpLimits& limits = {},
                         const TlsClientOptions& tls = {});

}  // namespace phonefarm::ctl
