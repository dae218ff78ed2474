// ktl: one binary for every command. Each command lives in cli/cmd_*.cpp and registers itself.
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>

#include "cli/command.h"
#include "core/base/runtime_tuning.h"

namespace {

void print_usage() {
  std::cout
      << "ktl: build, train and serve a small Korean language model\n\n"
         "usage: ktl <command> [flags]    (ktl <command> --help for its flags)\n\ncommands:\n";
  for (const auto& [name, c] : ktl::cli::registry()) {
    std::string left = "  " + name;
    left.resize(20, ' ');
    std::cout << left << c.summary << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  ktl::tune_runtime(argc, argv);
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::cout << "ktl 0.1.0\n";
    return 0;
  }
  auto& reg = ktl::cli::registry();
  auto it = reg.find(argv[1]);
  if (it == reg.end()) {
    std::cerr << "ktl: unknown command '" << argv[1] << "' (see 'ktl --help')\n";
    return 2;
  }
  const auto& cmd = it->second;
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::cout << ktl::cli::command_help(cmd);
      return 0;
    }
  }
  try {
    auto args = ktl::cli::parse_args(cmd, argc - 2, argv + 2);
    return cmd.run(args);
  } catch (const ktl::cli::UsageError& e) {
    std::cerr << "ktl " << cmd.name << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ktl " << cmd.name << ": error: " << e.what() << "\n";
    return 1;
  }
}
