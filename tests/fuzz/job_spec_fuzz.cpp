// libFuzzer target: the job-spec validator (jobs/job_spec), as POST /v1/jobs feeds it. A data
// dir with the repo's configs/, a data/ and a checkpoint dir is made once; a bad spec must throw
// JobSpecError (the route's 400). An accepted spec must round-trip: its stored form validates
// again and yields the child command lines, as the runner does when it starts the job.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <string>

#include "jobs/job.h"
#include "jobs/job_spec.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

namespace fs = std::filesystem;

const ktl::jobs::JobSpecContext& context() {
  static const ktl::jobs::JobSpecContext ctx = [] {
    const fs::path root = ktl::fuzz::scratch_dir() / "data";
    fs::create_directories(root / "data");
    fs::create_directories(root / "checkpoints" / "step-10");
    fs::create_directories(root / "corpus");
    fs::copy(fs::path(KTL_SOURCE_DIR) / "configs", root / "configs",
             fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    ktl::jobs::JobSpecContext c;
    c.data_dir = root.string();
    c.allowed_roots = {(ktl::fuzz::scratch_dir() / "allowed").string()};
    fs::create_directories(c.allowed_roots[0]);
    return c;
  }();
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& ctx = context();
  const std::string body(reinterpret_cast<const char*>(data), size);
  ktl::jobs::ValidatedSpec v;
  try {
    v = ktl::jobs::validate_job_spec_text(body, ctx);
  } catch (const ktl::jobs::JobSpecError&) {
    return 0;
  } catch (const std::exception& e) {
    ktl::fuzz::undocumented_exception(e.what());
  }
  try {
    (void)v.params();
    ktl::jobs::Job job;
    job.id = 7;
    job.kind = v.kind;
    job.spec_json = v.to_json();
    job.output_dir = ktl::jobs::job_output_dir(v, ctx, job.id);
    (void)ktl::jobs::build_job_stages(job, ctx, ctx.data_dir + "/jobs.db");
  } catch (const std::exception& e) {
    // The spec was accepted a moment ago and nothing on disk changed: it must still build.
    ktl::fuzz::undocumented_exception(e.what());
  }
  return 0;
}
