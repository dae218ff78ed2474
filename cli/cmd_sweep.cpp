// ktl sweep: many short trainings over a search space with successive halving; see
// docs/training-guide.md (Sweeps) and core/train/sweep_runner.h.
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/command.h"
#include "cli/default_training_config.h"
#include "cli/stop_on_signal.h"
#include "core/model/device.h"
#include "core/model/model_config.h"
#include "core/model/thread_policy.h"
#include "core/train/sweep_runner.h"
#include "core/train/sweep_space.h"
#include "core/train/training_config.h"
#include "jobs/child_reporting.h"

namespace {

namespace fs = std::filesystem;
using ktl::cli::Args;
using ktl::cli::UsageError;

int run_sweep(const Args& args) {
  ktl::SweepSpace space;
  try {
    space = ktl::load_sweep_space(args.get("space"));
  } catch (const std::runtime_error& e) {
    throw UsageError(e.what());
  }
  ktl::SweepRunOptions o;
  if (args.has("config"))
    o.base = ktl::load_training_config(args.get("config"));
  else if (const std::string d = ktl::cli::default_training_config_path(); !d.empty())
    o.base = ktl::load_training_config(d);
  o.model = ktl::load_model_config_yaml(args.get("model-config"));
  o.data_dir = args.get("data");
  o.output_dir = args.get("output-dir");
  o.device = ktl::resolve_device(o.base.device);
  std::cout << ktl::describe(ktl::apply_thread_policy(o.base.num_threads)) << "\n";

  ktl::jobs::ChildSinks sinks(args.get("job-db"), args.get_int("job-id", 0));
  ktl::SweepRunner runner(space, o, sinks.sink());
  ktl::SweepResult r;
  {
    ktl::cli::StopOnSignal<ktl::SweepRunner> stop(&runner);
    r = runner.run();
  }
  sinks.sink().flush();
  if (!r.complete) {
    std::cout << "sweep stopped; run the same command again to resume from "
              << (fs::path(o.output_dir) / "sweep_state.json").string() << "\n";
    return 0;
  }
  std::cout << r.ranking_markdown;
  if (args.has("save-recipe") && !r.rows.empty() && !r.recipe_yaml.empty()) {
    ktl::write_recipe(args.get("save-recipe"), o.base, o.model, r.rows.front(),
                      space.halving.max_steps);
    std::cout << "recipe: " << args.get("save-recipe") << "\n";
  }
  return 0;
}

KTL_COMMAND(ktl::cli::Command{
    "sweep",
    "Hyperparameter sweep: short trainings over a search space, successive halving, a recipe.",
    {{"space", "sweep YAML (method, trials, budget_minutes, halving, params)", "", false, true},
     {"config", "base training YAML (default configs/training.yaml)"},
     {"model-config", "base model YAML", "", false, true},
     {"data", "data directory with train.bin, val.bin, tokenizer.model", "", false, true},
     {"output-dir", "sweep_state.json, trial-<id>/, ranking.md, recipe.yaml (resume: same dir)", "",
      false, true},
     {"save-recipe", "also write the best trial's config here (e.g. configs/recipes/tiny.yaml)"},
     {"job-db", "job database (set by the training daemon)"},
     {"job-id", "job id in --job-db"}},
    run_sweep});

}  // namespace
