// ktl doctor: checks a data directory for corruption on disk (docs/deployment.md, "Corruption on
// disk"): job databases, checkpoints and their links, token shards, tokenizers. Exit 0 when
// healthy, 1 when something is damaged; warnings (e.g. a stale temporary directory) do not count.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/data_dir_doctor.h"

namespace {

using ktl::cli::Args;
using ktl::cli::DoctorReport;

std::string plural(int n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

void print_text(const DoctorReport& r) {
  int errors = 0;
  for (const auto& f : r.findings) {
    std::cout << (f.warning ? "warning: " : "error: ") << f.path << ": " << f.problem << "\n";
    errors += !f.warning;
  }
  std::cout << "checked " << plural(r.databases, "database") << ", "
            << plural(r.checkpoints, "checkpoint") << ", " << plural(r.shards, "token shard")
            << ", " << plural(r.tokenizers, "tokenizer") << ": "
            << (r.ok() ? "healthy" : plural(errors, "problem") + " found") << "\n";
}

void print_json(const DoctorReport& r) {
  nlohmann::json problems = nlohmann::json::array(), warnings = nlohmann::json::array();
  for (const auto& f : r.findings)
    (f.warning ? warnings : problems).push_back({{"path", f.path}, {"problem", f.problem}});
  nlohmann::json j = {{"ok", r.ok()},
                      {"problems", problems},
                      {"warnings", warnings},
                      {"checked",
                       {{"databases", r.databases},
                        {"checkpoints", r.checkpoints},
                        {"shards", r.shards},
                        {"tokenizers", r.tokenizers}}}};
  std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

int run_doctor(const Args& args) {
  const DoctorReport r = ktl::cli::check_data_dir(args.get("data-dir", "var"));
  if (args.get_bool("json"))
    print_json(r);
  else
    print_text(r);
  return r.ok() ? 0 : 1;
}

KTL_COMMAND(ktl::cli::Command{
    "doctor",
    "Check a data directory for corruption: job databases (page checksums, integrity_check), "
    "checkpoints (sha256 of every file), latest/best links, token shards, tokenizers.",
    {{"data-dir", "directory to check (what `ktl serve --data-dir` uses), or one checkpoint",
      "var"},
     {"json", "print one JSON object {ok, problems, warnings, checked}", "", true}},
    run_doctor,
    false,
    "data-dir"});

}  // namespace
