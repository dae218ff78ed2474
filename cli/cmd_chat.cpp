// ktl chat: a multi-turn conversation in the terminal over the engine. Replies stream as they
// are generated; the history is sent back each turn (oldest turns dropped when it outgrows the
// context); /reset, /system TEXT, /exit. Ctrl-C stops the reply in progress (what it said so
// far stays in the history), not the program; Ctrl-D or /exit ends it.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/engine_device.h"
#include "cli/verify_flag.h"
#include "core/engine/generator.h"
#include "core/scheduling/sampler.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"

namespace {

using ktl::cli::Args;
using ktl::cli::UsageError;

std::atomic<bool> g_replying{false};
std::atomic<bool> g_interrupted{false};

// Async-signal-safe: two atomic stores and a write(2).
void on_sigint(int) {
  if (g_replying.load()) {
    g_interrupted.store(true);
  } else {
    static const char hint[] = "\n(/exit or Ctrl-D to quit)\n> ";
    ssize_t ignored = write(STDOUT_FILENO, hint, sizeof hint - 1);
    (void)ignored;
  }
}

// SIGINT stops replies while this lives; reads restart after it (SA_RESTART).
class SigintScope {
 public:
  SigintScope() {
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &old_);
  }
  ~SigintScope() { sigaction(SIGINT, &old_, nullptr); }

 private:
  struct sigaction old_ {};
};

class ChatRepl {
 public:
  ChatRepl(ktl::Engine& engine, ktl::SamplingParams params, std::string system)
      : engine_(engine), params_(params), system_(std::move(system)) {
    // The engine owns the tokenizer and outlives the template: a non-owning pointer will do.
    std::shared_ptr<const ktl::Tokenizer> tok(&engine.tokenizer(), [](const ktl::Tokenizer*) {});
    tmpl_ = std::make_unique<ktl::ChatTemplate>(ktl::ChatTemplate::require(tok));
    params_.stop_token_ids.push_back(tmpl_->end_of_turn_id());
  }

  int run() {
    std::string line;
    while (std::cout << "> " << std::flush, std::getline(std::cin, line)) {
      if (line.empty()) continue;
      if (line == "/exit" || line == "/quit") return 0;
      if (line == "/reset") {
        history_.clear();
        std::cout << "(history cleared)\n";
      } else if (line.rfind("/system", 0) == 0) {
        system_ = line.size() > 8 ? line.substr(8) : "";
        history_.clear();
        std::cout << "(system message set; history cleared)\n";
      } else if (line[0] == '/') {
        std::cout << "(commands: /reset, /system TEXT, /exit)\n";
      } else {
        history_.push_back({"user", line});
        history_.push_back({"assistant", reply()});
      }
    }
    std::cout << "\n";
    return 0;
  }

 private:
  // The conversation's ids; the oldest exchanges go first when it would not leave room for
  // the reply.
  std::vector<int> prompt() {
    while (true) {
      std::vector<ktl::ChatMessage> msgs;
      if (!system_.empty()) msgs.push_back({"system", system_});
      msgs.insert(msgs.end(), history_.begin(), history_.end());
      std::vector<int> ids = tmpl_->render(msgs, true).ids;
      if (static_cast<int>(ids.size()) + params_.max_tokens < engine_.max_context() ||
          history_.size() <= 1)
        return ids;
      history_.erase(history_.begin(), history_.begin() + 2);
    }
  }

  std::string reply() {
    ktl::GenerationRequest req;
    req.prompt_tokens = prompt();
    req.sampling = params_;
    req.sampling.max_tokens = std::min(
        params_.max_tokens, engine_.max_context() - static_cast<int>(req.prompt_tokens.size()));
    if (req.sampling.max_tokens < 1) {
      std::cout << "(the message does not fit in the context)\n";
      return "";
    }
    g_interrupted = false;
    g_replying = true;
    auto h = engine_.submit(std::move(req));
    std::string text;
    bool first = true;
    ktl::GenerationEvent ev;
    while (true) {
      if (g_interrupted.exchange(false)) {
        h->cancel();
        std::cout << " [stopped]";
      }
      if (!h->next(&ev, std::chrono::milliseconds(50))) continue;
      std::string piece = ev.text;
      if (first && !piece.empty()) {  // the reply's word-start space
        if (piece[0] == ' ') piece.erase(0, 1);
        first = false;
      }
      text += piece;
      std::cout << piece << std::flush;
      if (ev.finish != ktl::FinishReason::kNone) break;
    }
    g_replying = false;
    std::cout << "\n";
    if (ev.finish == ktl::FinishReason::kError) std::cout << "(error: " << ev.error << ")\n";
    return text;
  }

  ktl::Engine& engine_;
  ktl::SamplingParams params_;
  std::string system_;
  std::unique_ptr<ktl::ChatTemplate> tmpl_;
  std::vector<ktl::ChatMessage> history_;
};

int run_chat(const Args& a) {
  ktl::cli::check_engine_device(a);
  ktl::SamplingParams p;
  p.max_tokens = static_cast<int>(a.get_int("max-tokens", 256));
  p.temperature = static_cast<float>(a.get_double("temperature", 0.7));
  p.top_p = static_cast<float>(a.get_double("top-p", 0.9));
  p.repetition_penalty = static_cast<float>(a.get_double("repetition-penalty", 1.1));
  if (a.has("seed")) p.seed = static_cast<uint64_t>(a.get_int("seed", 0));
  try {
    ktl::Sampler::validate(p);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  if (p.max_tokens < 1) throw UsageError("--max-tokens must be at least 1");
  ktl::EngineConfig cfg;
  cfg.dtype = a.get("dtype", "int8");
  cfg.device = a.get("device", "auto");
  cfg.num_threads = static_cast<int>(a.get_int("threads", 0));
  cfg.kv_cache_mb = static_cast<int>(a.get_int("kv-cache-mb", 128));
  cfg.max_num_seqs = 1;
  cfg.verify_checksums = !a.get_bool("no-verify");
  auto engine = ktl::Engine::load(a.get("model"), cfg);
  try {
    ChatRepl repl(*engine, p, a.get("system", ""));
    std::cout << "ktl chat with " << engine->model_name()
              << " (/reset, /system TEXT, /exit; Ctrl-C stops a reply)\n";
    SigintScope sigint;
    const int rc = repl.run();
    engine->shutdown();
    return rc;
  } catch (const std::runtime_error& e) {
    throw UsageError(e.what());  // no chat markers: say how to add them
  }
}

KTL_COMMAND(ktl::cli::Command{
    "chat",
    "Chat with a checkpoint in the terminal: streaming replies, history, /reset, /system.",
    {{"model", "checkpoint directory (with the chat markers: ktl sft adds them)", "", false, true},
     {"system", "system message", ""},
     {"max-tokens", "reply length limit", "256"},
     {"temperature", "0 = greedy", "0.7"},
     {"top-p", "nucleus sampling mass", "0.9"},
     {"repetition-penalty", "HF-style, > 1 discourages repeats", "1.1"},
     {"seed", "sampling seed", ""},
     {"dtype", "fp32 | bf16 | int8 (weight-only)", "int8"},
     {"threads", "CPU threads (0 = every core)", "0"},
     ktl::cli::engine_device_flag(),
     {"kv-cache-mb", "KV cache budget", "128"},
     ktl::cli::no_verify_flag()},
    run_chat});

}  // namespace
