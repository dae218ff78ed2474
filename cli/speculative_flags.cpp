#include "cli/speculative_flags.h"

#include <filesystem>
#include <stdexcept>
#include <string>

namespace ktl::cli {

std::vector<Flag> speculative_flags() {
  return {
      {"speculative",
       "speculative decoding: off | auto | k (draft tokens per step; auto picks k from measured "
       "acceptance and step costs, and 0 when a step would lose)",
       "off (auto with --draft-model or --prompt-lookup)"},
      {"draft-model", "draft checkpoint with this model's tokenizer (ktl distill --teacher)", ""},
      {"draft-dtype",
       "the draft's weights: auto | fp32 | bf16 | int8 (auto: int8, whatever --dtype is; the "
       "output does not depend on it)",
       "auto"},
      {"prompt-lookup",
       "speculate by matching the last N tokens earlier in the sequence (no draft model)", "0"},
  };
}

std::vector<Flag> with_speculative_flags(std::vector<Flag> flags) {
  for (Flag& f : speculative_flags()) flags.push_back(std::move(f));
  return flags;
}

SpeculativeConfig speculative_from_args(const Args& args) {
  SpeculativeConfig c;
  c.draft_model = args.get("draft-model", "");
  c.draft_dtype = args.get("draft-dtype", "auto");
  if (c.draft_dtype != "auto" && c.draft_dtype != "fp32" && c.draft_dtype != "bf16" &&
      c.draft_dtype != "int8")
    throw UsageError("--draft-dtype must be auto, fp32, bf16 or int8");
  const long long lookup = args.get_int("prompt-lookup", 0);
  if (lookup < 0 || lookup > 64) throw UsageError("--prompt-lookup must be 0-64");
  c.prompt_lookup = static_cast<int>(lookup);
  const bool has_source = !c.draft_model.empty() || c.prompt_lookup > 0;
  try {
    c = parse_speculative_mode(args.get("speculative", has_source ? "auto" : "off"), c);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  if (c.enabled() && !has_source)
    throw UsageError("--speculative needs --draft-model DIR or --prompt-lookup N");
  if (!c.draft_model.empty() && !std::filesystem::is_directory(c.draft_model))
    throw UsageError("--draft-model " + c.draft_model + " is not a directory");
  return c;
}

}  // namespace ktl::cli
