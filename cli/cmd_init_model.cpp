// ktl init-model: a randomly initialised checkpoint (tests, benchmarks, the trainer's start).
#include <filesystem>
#include <iostream>

#include "cli/command.h"
#include "core/base/file_util.h"
#include "core/model/checkpoint.h"
#include "core/model/model.h"
#include "core/model/model_config.h"
#include "core/tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;

std::string tokenizer_path(const std::string& p) {
  if (fs::is_directory(p)) return (fs::path(p) / "tokenizer.model").string();
  return p;
}

int run_init_model(const ktl::cli::Args& args) {
  auto config = ktl::load_model_config_yaml(args.get("model-config"));
  const std::string tok_path = tokenizer_path(args.get("tokenizer"));
  auto tok = ktl::Tokenizer::load(tok_path);
  if (tok->vocab_size() != config.vocab_size) {
    std::cerr << "note: using the tokenizer's vocab size " << tok->vocab_size() << " instead of "
              << config.vocab_size << " from the config\n";
    config.vocab_size = tok->vocab_size();
  }
  ktl::Transformer model(config);
  model->init_weights(static_cast<uint64_t>(args.get_int("seed", 1234)));
  ktl::CheckpointMeta meta;
  meta.extra["init"] = "random";
  meta.extra["seed"] = args.get("seed", "1234");
  ktl::save_checkpoint(args.get("out"), *model, tok->model_bytes(), meta);
  std::cout << "wrote " << args.get("out") << " (" << config.num_parameters() << " parameters)\n";
  return 0;
}

KTL_COMMAND(ktl::cli::Command{
    "init-model",
    "Write a randomly initialised checkpoint for a model config and tokenizer.",
    {{"model-config", "model YAML", "", false, true},
     {"tokenizer", "tokenizer directory or .model file", "", false, true},
     {"out", "output checkpoint directory", "", false, true},
     {"seed", "initialisation seed", "1234"}},
    run_init_model});

}  // namespace
