// ktl_load_bench: a small load client for `ktl serve` (or any OpenAI-compatible server).
// N client threads each send streaming /v1/completions requests back to back for a fixed time;
// prints requests/s, aggregate generated tokens/s and TTFT p50/p99 per concurrency level.
//
//   ktl_load_bench --port 8080 [--host 127.0.0.1] [--concurrency 1,8,32] [--seconds 20]
//                  [--max-tokens 64] [--prompt TEXT] [--api-key KEY] [--ignore-eos]
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Options {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::vector<int> levels{1, 8, 32};
  double seconds = 20;
  int max_tokens = 64;
  std::string prompt = "옛날 옛적에 작은 마을에";
  std::string api_key;
  bool ignore_eos = true;
};

struct Sample {
  double ttft_ms = -1;
  int tokens = 0;
  bool ok = false;
  std::string error;  // status or transport error when !ok
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "ktl_load_bench: " << why
            << "\nusage: ktl_load_bench --port N [--host H] [--concurrency 1,8,32] [--seconds S]"
               " [--max-tokens N] [--prompt TEXT] [--api-key KEY] [--no-ignore-eos]\n";
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  if (const char* k = std::getenv("KTL_API_KEY")) o.api_key = k;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--host")
      o.host = value();
    else if (a == "--port")
      o.port = std::atoi(value().c_str());
    else if (a == "--seconds")
      o.seconds = std::atof(value().c_str());
    else if (a == "--max-tokens")
      o.max_tokens = std::atoi(value().c_str());
    else if (a == "--prompt")
      o.prompt = value();
    else if (a == "--api-key")
      o.api_key = value();
    else if (a == "--no-ignore-eos")
      o.ignore_eos = false;
    else if (a == "--ignore-eos")
      o.ignore_eos = true;
    else if (a == "--concurrency") {
      o.levels.clear();
      std::stringstream ss(value());
      std::string item;
      while (std::getline(ss, item, ',')) o.levels.push_back(std::atoi(item.c_str()));
    } else
      usage("unknown argument " + a);
  }
  if (o.port <= 0 || o.seconds <= 0 || o.max_tokens <= 0 || o.levels.empty()) usage("bad values");
  return o;
}

// One streaming request: TTFT = first SSE event carrying text; tokens from the usage chunk.
Sample one_request(httplib::Client& cli, const Options& o, const std::string& body) {
  Sample s;
  const auto t0 = Clock::now();
  std::string buf;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body;
  req.set_header("Content-Type", "application/json");
  if (!o.api_key.empty()) req.set_header("Authorization", "Bearer " + o.api_key);
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    buf.append(data, n);
    size_t pos;
    while ((pos = buf.find("\n\n")) != std::string::npos) {
      std::string ev = buf.substr(0, pos);
      buf.erase(0, pos + 2);
      if (ev.rfind("data: ", 0) != 0 || ev == "data: [DONE]") continue;
      json j = json::parse(ev.substr(6), nullptr, false);
      if (j.is_discarded()) continue;
      if (s.ttft_ms < 0 && !j["choices"].empty() &&
          !j["choices"][0]["text"].get<std::string>().empty())
        s.ttft_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (j.contains("usage") && j["usage"].is_object())
        s.tokens = j["usage"]["completion_tokens"].get<int>();
    }
    return true;
  };
  auto res = cli.send(req);
  s.ok = res && res->status == 200;
  if (!res)
    s.error = httplib::to_string(res.error());
  else if (!s.ok)
    s.error = std::to_string(res->status) + " " + res->body.substr(0, 200);
  return s;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

void run_level(const Options& o, int clients) {
  json body = {{"prompt", o.prompt},
               {"max_tokens", o.max_tokens},
               {"temperature", 0.8},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}},
               {"ignore_eos", o.ignore_eos}};
  std::mutex mu;
  std::vector<Sample> samples;
  const auto start = Clock::now();
  const auto stop_at = start + std::chrono::duration<double>(o.seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client cli(o.host, o.port);
      cli.set_read_timeout(300, 0);
      json b = body;
      int n = 0;
      while (Clock::now() < stop_at) {
        b["seed"] = c * 100000 + n++;
        Sample s = one_request(cli, o, b.dump());
        std::lock_guard<std::mutex> lock(mu);
        samples.push_back(s);
      }
    });
  }
  for (auto& t : threads) t.join();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> ttft;
  long tokens = 0;
  int ok = 0, errors = 0;
  std::string first_error;
  for (const auto& s : samples) {
    if (!s.ok) {
      if (errors++ == 0) first_error = s.error;
      continue;
    }
    ++ok;
    tokens += s.tokens;
    if (s.ttft_ms >= 0) ttft.push_back(s.ttft_ms);
  }
  std::printf("%11d %9d %7d %10.2f %12.1f %14.1f %14.1f\n", clients, ok, errors, ok / wall,
              static_cast<double>(tokens) / wall, percentile(ttft, 0.5), percentile(ttft, 0.99));
  if (errors) std::printf("            first error: %s\n", first_error.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  httplib::Client probe(o.host, o.port);
  auto h = probe.Get("/health");
  if (!h) {
    std::cerr << "ktl_load_bench: no server at " << o.host << ":" << o.port << "\n";
    return 1;
  }
  std::printf("server %s:%d  max_tokens=%d  %.0f s per level  prompt=\"%s\"\n", o.host.c_str(),
              o.port, o.max_tokens, o.seconds, o.prompt.c_str());
  std::printf("%11s %9s %7s %10s %12s %14s %14s\n", "concurrency", "requests", "errors", "req/s",
              "tokens/s", "ttft_p50_ms", "ttft_p99_ms");
  for (int level : o.levels) run_level(o, level);
  return 0;
}
