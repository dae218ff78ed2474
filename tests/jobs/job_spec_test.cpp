#include "jobs/job_spec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "tests/support/job_test_util.h"

namespace ktl::jobs {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::TempDir;

class JobSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(root_.path() / "data" / "shards");
    fs::create_directories(root_.path() / "configs");
    std::ofstream(root_.path() / "configs" / "training.yaml") << "max_steps: 10\n";
    std::ofstream(root_.path() / "configs" / "model.yaml") << "dim: 64\n";
    std::ofstream(outside_.path() / "secret.yaml") << "x: 1\n";
    fs::create_directories(outside_.path() / "corpus");
    ctx_.data_dir = root_.str("data");
  }

  json train_spec() const {
    return {{"kind", "train"},
            {"name", "tiny"},
            {"options",
             {{"config", root_.str("configs/training.yaml")},
              {"model_config", root_.str("configs/model.yaml")},
              {"data", "shards"},
              {"max_steps", 200},
              {"learning_rate", 0.0003},
              {"gradient_checkpointing", true},
              {"bf16", "false"}}}};
  }

  // The error message of validating `spec`, or "" when it validated.
  std::string error_of(const json& spec) const {
    try {
      validate_job_spec(spec, ctx_);
      return "";
    } catch (const JobSpecError& e) {
      return e.what();
    }
  }

  TempDir root_, outside_;
  JobSpecContext ctx_;
};

TEST_F(JobSpecTest, SftAndDpoSpecsBuildTheirCommandLines) {
  fs::create_directories(root_.path() / "data" / "base");
  std::ofstream(root_.path() / "data" / "chat.tsv") << "q\ta\n안녕\t반가워요\n";
  json sft = {
      {"kind", "sft"},
      {"options",
       {{"init_from", "base"}, {"data", "chat.tsv"}, {"max_steps", 50}, {"no_pack", true}}}};
  ValidatedSpec v = validate_job_spec(sft, ctx_);
  EXPECT_EQ(v.kind, JobKind::kSft);
  Job job;
  job.id = 3;
  job.kind = v.kind;
  job.spec_json = v.to_json();
  job.output_dir = job_output_dir(v, ctx_, job.id);
  auto stages = build_job_stages(job, ctx_, "/db/jobs.db");
  ASSERT_EQ(stages.size(), 1u);
  std::vector<std::string> want = {"sft",
                                   "--data",
                                   root_.str("data/chat.tsv"),
                                   "--init-from",
                                   root_.str("data/base"),
                                   "--output-dir",
                                   root_.str("data/jobs/3/checkpoints"),
                                   "--max-steps=50",
                                   "--no-pack=true",
                                   "--job-db",
                                   "/db/jobs.db",
                                   "--job-id",
                                   "3"};
  EXPECT_EQ(stages[0].args, want);
  // Training keys are validated as for train; unknown keys and a missing start are refused.
  sft["options"]["max_steps"] = -1;
  EXPECT_NE(error_of(sft).find("options.max_steps"), std::string::npos) << error_of(sft);
  sft["options"].erase("max_steps");
  sft["options"]["bogus"] = 1;
  EXPECT_NE(error_of(sft).find("options.bogus"), std::string::npos);
  sft["options"].erase("bogus");
  sft["options"].erase("init_from");
  EXPECT_NE(error_of(sft).find("options.init_from"), std::string::npos);
  json dpo = {{"kind", "dpo"},
              {"options", {{"init_from", "base"}, {"data", "chat.tsv"}, {"beta", 0.2}}}};
  EXPECT_EQ(validate_job_spec(dpo, ctx_).kind, JobKind::kDpo);
  dpo["options"].erase("init_from");
  EXPECT_NE(error_of(dpo).find("options.init_from: is required"), std::string::npos);
}

// dpo: its own options checked here, every other key as a training key over the dpo defaults;
// a resumed job gets --resume-from next to its --init-from (the reference).
TEST_F(JobSpecTest, DpoSpecChecksItsOptionsAndResumes) {
  fs::create_directories(root_.path() / "data" / "base");
  fs::create_directories(root_.path() / "data" / "jobs" / "4" / "checkpoints" / "checkpoint-20");
  std::ofstream(root_.path() / "data" / "prefs.jsonl") << "{}\n";
  json dpo = {{"kind", "dpo"},
              {"options",
               {{"init_from", "base"},
                {"data", "prefs.jsonl"},
                {"loss", "orpo"},
                {"orpo_lambda", 0.2},
                {"rejected_from_model", true},
                {"gradient_accumulation_steps", 4},
                {"max_steps", 30}}}};
  ValidatedSpec v = validate_job_spec(dpo, ctx_);
  Job job;
  job.id = 4;
  job.kind = v.kind;
  job.spec_json = v.to_json();
  job.output_dir = job_output_dir(v, ctx_, job.id);
  job.resume_from = root_.str("data/jobs/4/checkpoints/checkpoint-20");
  auto stages = build_job_stages(job, ctx_, "/db/jobs.db");
  ASSERT_EQ(stages.size(), 1u);
  std::vector<std::string> want = {"dpo",
                                   "--data",
                                   root_.str("data/prefs.jsonl"),
                                   "--init-from",
                                   root_.str("data/base"),
                                   "--output-dir",
                                   root_.str("data/jobs/4/checkpoints"),
                                   "--resume-from",
                                   job.resume_from,
                                   "--gradient-accumulation-steps=4",
                                   "--loss=orpo",
                                   "--max-steps=30",
                                   "--orpo-lambda=0.2",
                                   "--rejected-from-model=true",
                                   "--job-db",
                                   "/db/jobs.db",
                                   "--job-id",
                                   "4"};
  EXPECT_EQ(stages[0].args, want);
  auto refused = [&](const std::string& key, const json& value, const std::string& why) {
    json bad = dpo;
    bad["options"][key] = value;
    const std::string e = error_of(bad);
    EXPECT_NE(e.find("options." + key), std::string::npos) << key << ": " << e;
    EXPECT_NE(e.find(why), std::string::npos) << key << ": " << e;
  };
  refused("loss", "ppo", "\"dpo\" or \"orpo\"");
  refused("beta", 0, "> 0");
  refused("val_fraction", 1.5, "in [0, 1)");
  refused("rejected_from_model", "yes", "true or false");
  refused("rejected_max_tokens", 0, "integer >= 1");
  refused("rejected_top_p", 0, "in (0, 1]");
  refused("max_steps", 0, "");
  refused("bogus", 1, "not a training option");
  // The dpo defaults are the base: a learning rate below sft's floor is fine here.
  json low = dpo;
  low["options"]["learning_rate"] = 2e-6;
  EXPECT_EQ(error_of(low), "");
}

TEST_F(JobSpecTest, ValidTrainSpecBuildsTheTrainerCommandLine) {
  ctx_.allowed_roots = {root_.str("configs")};
  ValidatedSpec v = validate_job_spec(train_spec(), ctx_);
  EXPECT_EQ(v.kind, JobKind::kTrain);
  EXPECT_EQ(v.name, "tiny");
  EXPECT_EQ(v.options["data"], root_.str("data/shards"));  // relative to the data dir
  EXPECT_EQ(v.params().at("max_steps"), "200");

  Job job;
  job.id = 7;
  job.kind = v.kind;
  job.spec_json = v.to_json();
  job.output_dir = job_output_dir(v, ctx_, job.id);
  EXPECT_EQ(job.output_dir, root_.str("data/jobs/7/checkpoints"));
  auto stages = build_job_stages(job, ctx_, "/db/jobs.db");
  ASSERT_EQ(stages.size(), 1u);
  std::vector<std::string> want = {"train",
                                   "--config",
                                   root_.str("configs/training.yaml"),
                                   "--model-config",
                                   root_.str("configs/model.yaml"),
                                   "--data",
                                   root_.str("data/shards"),
                                   "--output-dir",
                                   root_.str("data/jobs/7/checkpoints"),
                                   "--bf16=false",
                                   "--gradient-checkpointing=true",
                                   "--learning-rate=0.0003",
                                   "--max-steps=200",
                                   "--job-db",
                                   "/db/jobs.db",
                                   "--job-id",
                                   "7"};
  EXPECT_EQ(stages[0].args, want);
  EXPECT_EQ(stages[0].output_dir, root_.str("data/jobs/7/checkpoints"));

  job.resume_from = root_.str("data/jobs/7/checkpoints/checkpoint-50");
  auto resumed = build_job_stages(job, ctx_, "/db/jobs.db")[0].args;
  auto it = std::find(resumed.begin(), resumed.end(), "--resume-from");
  ASSERT_NE(it, resumed.end());
  EXPECT_EQ(*(it + 1), job.resume_from);
}

TEST_F(JobSpecTest, ConfigOutsideTheRootsIsRefusedUnlessAllowed) {
  json s = train_spec();
  std::string err = error_of(s);
  EXPECT_NE(err.find("options.config"), std::string::npos) << err;
  EXPECT_NE(err.find("outside the allowed roots"), std::string::npos) << err;
  ctx_.allowed_roots = {root_.str("configs")};
  EXPECT_EQ(error_of(s), "");
}

TEST_F(JobSpecTest, RejectsBadKindsAndFields) {
  ctx_.allowed_roots = {root_.str("configs")};
  EXPECT_NE(error_of({{"kind", "fly"}}).find("unknown job kind 'fly'"), std::string::npos);
  EXPECT_NE(error_of({{"name", "x"}}).find("kind: is required"), std::string::npos);
  EXPECT_NE(error_of({{"kind", 3}}).find("kind: must be a string"), std::string::npos);
  EXPECT_NE(error_of(json::array()).find("JSON object"), std::string::npos);
  json s = train_spec();
  s["colour"] = "red";
  EXPECT_NE(error_of(s).find("colour: unknown field"), std::string::npos);
  s = train_spec();
  s["name"] = 5;
  EXPECT_NE(error_of(s).find("name: must be a string"), std::string::npos);
  s = train_spec();
  s["options"].erase("config");
  EXPECT_NE(error_of(s).find("options.config: is required"), std::string::npos);
  s = train_spec();
  s["options"]["config"] = 12;
  EXPECT_NE(error_of(s).find("options.config: must be a string path"), std::string::npos);
  s = train_spec();
  s["options"]["max_steps"] = json::array({1, 2});
  EXPECT_NE(error_of(s).find("options.max_steps: must be a number"), std::string::npos);
  s = train_spec();
  s["options"]["Max-Steps"] = 3;
  EXPECT_NE(error_of(s).find("not a valid option name"), std::string::npos);
  s = train_spec();
  s["options"]["job_db"] = "x";
  EXPECT_NE(error_of(s).find("not a valid option name"), std::string::npos);
  s = train_spec();
  s["options"]["log_file"] = "/etc/passwd";  // a path smuggled through an override
  EXPECT_NE(error_of(s).find("options.log_file"), std::string::npos);
  s = train_spec();
  s["options"]["data"] = "missing";
  EXPECT_NE(error_of(s).find("does not exist"), std::string::npos);
  s = train_spec();
  s["options"]["data"] = root_.str("configs/model.yaml");
  EXPECT_NE(error_of(s).find("is not a directory"), std::string::npos);
  s = train_spec();
  s["options"]["output_dir"] = root_.str("configs/model.yaml");
  EXPECT_NE(error_of(s).find("exists and is not a directory"), std::string::npos);
  EXPECT_THROW(validate_job_spec_text("{\"kind\": ", ctx_), JobSpecError);
}

TEST_F(JobSpecTest, RejectsDotDotAndSymlinkEscapes) {
  json s = train_spec();
  ctx_.allowed_roots = {root_.str("configs")};
  s["options"]["data"] = "../../" + outside_.path().filename().string() + "/corpus";
  EXPECT_NE(error_of(s).find("outside the allowed roots"), std::string::npos) << error_of(s);

  fs::create_symlink(outside_.path() / "corpus", root_.path() / "data" / "link");
  s["options"]["data"] = "link";
  EXPECT_NE(error_of(s).find("outside the allowed roots"), std::string::npos);
  fs::create_symlink(outside_.path(), root_.path() / "data" / "out");
  s = train_spec();
  s["options"]["output_dir"] = "out/new-run";  // does not exist yet; its parent escapes
  EXPECT_NE(error_of(s).find("options.output_dir"), std::string::npos);

  s = train_spec();
  s["options"]["data"] = "shards/../shards";  // ".." that stays inside is fine
  EXPECT_EQ(error_of(s), "");
  // A root given with a trailing slash or "..": same answers.
  ctx_.data_dir = root_.str("data") + "/";
  EXPECT_EQ(error_of(train_spec()), "");
  EXPECT_TRUE(path_is_allowed(root_.str("data/x"), ctx_));
  EXPECT_FALSE(path_is_allowed(root_.str("data2/x"), ctx_));  // prefix of a name is not inside
}

TEST_F(JobSpecTest, PathsAreCheckedAgainWhenTheJobStarts) {
  ctx_.allowed_roots = {root_.str("configs")};
  fs::create_directories(root_.path() / "data" / "swap");
  json s = train_spec();
  s["options"]["data"] = "swap";
  ValidatedSpec v = validate_job_spec(s, ctx_);
  Job job;
  job.id = 1;
  job.kind = v.kind;
  job.spec_json = v.to_json();
  EXPECT_EQ(build_job_stages(job, ctx_, "/db").size(), 1u);
  fs::remove(root_.path() / "data" / "swap");  // swapped for a symlink out of the roots
  fs::create_directory_symlink(outside_.path() / "corpus", root_.path() / "data" / "swap");
  try {
    build_job_stages(job, ctx_, "/db");
    FAIL() << "expected JobSpecError";
  } catch (const JobSpecError& e) {
    EXPECT_NE(std::string(e.what()).find("outside the allowed roots"), std::string::npos)
        << e.what();
  }
}

TEST_F(JobSpecTest, PipelinePreparesThenTrainsOnThePreparedData) {
  ctx_.allowed_roots = {root_.str("configs"), outside_.str()};
  json train = train_spec()["options"];
  train.erase("data");
  json spec = {
      {"kind", "pipeline"},
      {"options",
       {{"prepare_data", {{"input", json::array({outside_.str("corpus")})}}}, {"train", train}}}};
  ValidatedSpec v = validate_job_spec(spec, ctx_);
  Job job;
  job.id = 3;
  job.kind = v.kind;
  job.spec_json = v.to_json();
  job.output_dir = job_output_dir(v, ctx_, job.id);
  auto stages = build_job_stages(job, ctx_, "/db");
  ASSERT_EQ(stages.size(), 2u);
  EXPECT_EQ(stages[0].name, "prepare-data");
  std::string prepared = root_.str("data/jobs/3/data");
  EXPECT_EQ(stages[0].args,
            (std::vector<std::string>{"prepare-data", "--input", outside_.str("corpus"), "--output",
                                      prepared}));
  auto& t = stages[1].args;
  auto it = std::find(t.begin(), t.end(), "--data");
  ASSERT_NE(it, t.end());
  EXPECT_EQ(*(it + 1), prepared);
  EXPECT_EQ(stages[1].output_dir, root_.str("data/jobs/3/checkpoints"));

  job.resume_from = "/ck";
  EXPECT_EQ(build_job_stages(job, ctx_, "/db").size(), 1u);  // data already prepared
  job.resume_from.clear();

  // Held-out evaluation files are paths too: checked against the roots, one flag each.
  spec["options"]["prepare_data"]["exclude"] = json::array({outside_.str("corpus")});
  job.spec_json = validate_job_spec(spec, ctx_).to_json();
  EXPECT_EQ(build_job_stages(job, ctx_, "/db")[0].args,
            (std::vector<std::string>{"prepare-data", "--input", outside_.str("corpus"),
                                      "--exclude", outside_.str("corpus"), "--output", prepared}));
  spec["options"]["prepare_data"]["exclude"] = "/etc/passwd";
  EXPECT_NE(error_of(spec).find("options.prepare_data.exclude"), std::string::npos);
  spec["options"]["prepare_data"].erase("exclude");

  spec["options"].erase("train");
  EXPECT_NE(error_of(spec).find("options.train: is required"), std::string::npos);
  spec["options"]["train"] = train;
  spec["options"]["prepare_data"] = json::object();
  EXPECT_NE(error_of(spec).find("options.prepare_data.input: is required"), std::string::npos);
  spec["options"]["prepare_data"] = {{"default_corpus", true}};
  EXPECT_EQ(error_of(spec), "");
}

// The field a spec error names (JobSpecError::field()), or "" when the spec validated.
std::string field_of(const json& spec, const JobSpecContext& ctx) {
  try {
    validate_job_spec(spec, ctx);
    return "";
  } catch (const JobSpecError& e) {
    return e.field();
  }
}

TEST_F(JobSpecTest, TrainingOverridesFollowTheTrainersRules) {
  ctx_.allowed_roots = {root_.str("configs")};
  auto with = [&](const std::string& key, const json& value) {
    json s = train_spec();
    s["options"][key] = value;
    return s;
  };
  struct Case {
    std::string key;
    json value;
    std::string message;  // part of the error
  };
  const std::vector<Case> bad = {
      {"max_steps", -5, "must be positive"},
      {"max_steps", 0, "must be positive"},
      {"max_steps", 1e30, "expected an integer"},
      {"max_steps", 2.5, "expected an integer"},
      {"max_steps", "many", "expected an integer"},
      {"max_steps", true, "expected an integer"},
      {"learning_rate", -1, "must be positive"},
      {"learning_rate", "fast", "expected a number"},
      {"batch_size", 0, "must be positive"},
      {"batch_size", 3000000000LL, "out of range"},
      {"batch_size", json(UINT64_MAX), "expected an integer"},
      {"help", true, "is not a training option"},
      {"dtype", "bf16", "is not a training option"},
      {"fp16", 3, "expected true or false"},
      {"device", "tpu", "expected auto, cpu, cuda or mps"},
      {"max_steps", json::array({1}), "must be a number"},
      {"max_steps", json::object(), "must be a number"},
      {"max_steps", nullptr, "must be a number"},
      {"min_learning_rate", 0.1, "must be between 0 and learning_rate"},
  };
  for (const Case& c : bad) {
    json s = with(c.key, c.value);
    std::string err = error_of(s);
    EXPECT_NE(err.find(c.message), std::string::npos) << c.key << "=" << c.value << ": " << err;
    EXPECT_EQ(field_of(s, ctx_), "options." + c.key) << c.key << "=" << c.value << ": " << err;
  }
  // Valid values of every type, including a string the trainer parses.
  EXPECT_EQ(error_of(with("max_steps", 9000000000LL)), "");
  EXPECT_EQ(error_of(with("learning_rate", 1e-4)), "");
  EXPECT_EQ(error_of(with("bf16", "auto")), "");
  EXPECT_EQ(error_of(with("batch_size", "16")), "");
  EXPECT_EQ(error_of(with("device", "cpu")), "");
}

TEST_F(JobSpecTest, NprocStartsDataParallelRanks) {
  ctx_.allowed_roots = {root_.str("configs")};
  json s = train_spec();
  s["options"]["nproc"] = 2;
  s["options"]["batch_size"] = 8;
  ValidatedSpec v = validate_job_spec(s, ctx_);
  Job job;
  job.id = 3;
  job.kind = v.kind;
  job.spec_json = v.to_json();
  job.output_dir = job_output_dir(v, ctx_, job.id);
  const auto args = build_job_stages(job, ctx_, "/db/jobs.db")[0].args;
  auto it = std::find(args.begin(), args.end(), "--nproc-per-node");
  ASSERT_NE(it, args.end());
  EXPECT_EQ(*(it + 1), "2");
  for (const json& bad : {json(0), json(65), json(1.5), json("2"), json(true)}) {
    s["options"]["nproc"] = bad;
    EXPECT_EQ(field_of(s, ctx_), "options.nproc") << bad;
  }
  s["options"]["nproc"] = 3;  // 8 rows do not split over 3 ranks
  EXPECT_NE(error_of(s).find("not a multiple of nproc 3"), std::string::npos) << error_of(s);
  EXPECT_EQ(field_of(s, ctx_), "options.nproc");
}

TEST_F(JobSpecTest, TrainingConfigFileIsValidatedWithItsOverrides) {
  ctx_.allowed_roots = {root_.str("configs")};
  json s = train_spec();
  std::ofstream(root_.path() / "configs" / "training.yaml") << "max_steps: 10\nbatch_szie: 4\n";
  EXPECT_NE(error_of(s).find("unknown key 'batch_szie'"), std::string::npos) << error_of(s);
  EXPECT_EQ(field_of(s, ctx_), "options.config");
  // The file's own value is invalid: the config names the field unless an override fixes it.
  std::ofstream(root_.path() / "configs" / "training.yaml") << "batch_size: 0\n";
  EXPECT_NE(error_of(s).find("batch_size: must be positive"), std::string::npos) << error_of(s);
  EXPECT_EQ(field_of(s, ctx_), "options.config");
  s["options"]["batch_size"] = 4;
  EXPECT_EQ(error_of(s), "");
  // Valid alone, invalid together: the options as a whole.
  std::ofstream(root_.path() / "configs" / "training.yaml") << "min_learning_rate: 0.0001\n";
  s["options"]["learning_rate"] = 0.00005;
  EXPECT_NE(error_of(s).find("min_learning_rate: must be between 0 and learning_rate"),
            std::string::npos)
      << error_of(s);
  EXPECT_EQ(field_of(s, ctx_), "options");
  s["options"]["learning_rate"] = 0.0003;
  // The pipeline's train stage gets the same checks.
  json p = {{"kind", "pipeline"},
            {"options", {{"prepare_data", {{"default_corpus", true}}}, {"train", s["options"]}}}};
  p["options"]["train"]["max_steps"] = -1;
  EXPECT_EQ(field_of(p, ctx_), "options.train.max_steps");
}

TEST_F(JobSpecTest, OtherKinds) {
  fs::create_directories(root_.path() / "data" / "ckpt");
  ValidatedSpec e = validate_job_spec(
      {{"kind", "eval"}, {"options", {{"model", "ckpt"}, {"data", "shards"}, {"split", "test"}}}},
      ctx_);
  EXPECT_EQ(e.name, "eval");
  Job job;
  job.id = 1;
  job.kind = e.kind;
  job.spec_json = e.to_json();
  auto args = build_job_stages(job, ctx_, "/db")[0].args;
  EXPECT_EQ(args, (std::vector<std::string>{"eval", "--model", root_.str("data/ckpt"), "--data",
                                            root_.str("data/shards"), "--split", "test", "--job-db",
                                            "/db", "--job-id", "1"}));
  EXPECT_NE(error_of({{"kind", "eval"},
                      {"options", {{"model", "ckpt"}, {"data", "shards"}, {"split", "../x"}}}})
                .find("options.split"),
            std::string::npos);
  ValidatedSpec tok = validate_job_spec(
      {{"kind", "train-tokenizer"}, {"options", {{"input", "shards"}, {"vocab_size", 8000}}}},
      ctx_);
  job.kind = tok.kind;
  job.spec_json = tok.to_json();
  job.output_dir = job_output_dir(tok, ctx_, 1);
  EXPECT_EQ(
      build_job_stages(job, ctx_, "/db")[0].args,
      (std::vector<std::string>{"train-tokenizer", "--input", root_.str("data/shards"), "--output",
                                root_.str("data/jobs/1/tokenizer"), "--vocab-size=8000"}));
}

// The LoRA keys are training keys of train, sft and dpo jobs: passed to the child as flags,
// checked as the trainer checks them, and LoRA without a base checkpoint is refused.
TEST_F(JobSpecTest, LoraKeysAreTrainingOptionsOfTrainSftAndDpo) {
  fs::create_directories(root_.path() / "data" / "base");
  std::ofstream(root_.path() / "data" / "chat.tsv") << "q\ta\n안녕\t반가워요\n";
  const json lora = {{"lora_rank", 16},
                     {"lora_alpha", 32},
                     {"lora_dropout", 0.1},
                     {"lora_targets", "q,v,gate"}};
  for (const char* kind : {"sft", "dpo"}) {
    json spec = {{"kind", kind}, {"options", {{"init_from", "base"}, {"data", "chat.tsv"}}}};
    for (auto it = lora.begin(); it != lora.end(); ++it) spec["options"][it.key()] = *it;
    ValidatedSpec v = validate_job_spec(spec, ctx_);
    Job job;
    job.id = 5;
    job.kind = v.kind;
    job.spec_json = v.to_json();
    job.output_dir = job_output_dir(v, ctx_, job.id);
    const auto args = build_job_stages(job, ctx_, "/db/jobs.db").at(0).args;
    for (const char* flag : {"--lora-rank=16", "--lora-alpha=32", "--lora-dropout=0.1",
                             "--lora-targets=q,v,gate"})
      EXPECT_NE(std::find(args.begin(), args.end(), flag), args.end()) << kind << " " << flag;
    json bad = spec;
    bad["options"]["lora_targets"] = "q,wq";
    EXPECT_EQ(field_of(bad, ctx_), "options.lora_targets") << error_of(bad);
    EXPECT_NE(error_of(bad).find("unknown LoRA target 'wq'"), std::string::npos) << error_of(bad);
    bad = spec;
    bad["options"]["lora_rank"] = -1;
    EXPECT_EQ(field_of(bad, ctx_), "options.lora_rank") << error_of(bad);
    bad = spec;
    bad["options"]["lora_dropout"] = 1.0;
    EXPECT_EQ(field_of(bad, ctx_), "options.lora_dropout") << error_of(bad);
  }
  ctx_.allowed_roots = {root_.str("configs")};
  json train = train_spec();
  train["options"]["lora_rank"] = 8;
  EXPECT_EQ(field_of(train, ctx_), "options.lora_rank");
  EXPECT_NE(error_of(train).find("needs init_from"), std::string::npos) << error_of(train);
  train["options"]["init_from"] = "base";
  EXPECT_EQ(error_of(train), "");
}

}  // namespace
}  // namespace ktl::jobs

namespace ktl::jobs {
namespace {

TEST_F(JobSpecTest, SweepSpecValidatesItsSpaceAndBuildsTheSweepCommand) {
  std::ofstream(root_.path() / "data" / "sweep.yaml")
      << "trials: 4\nparams:\n  learning_rate: {min: 1.0e-4, max: 1.0e-2, log: true}\n";
  ctx_.allowed_roots = {root_.str("configs")};
  json spec = {{"kind", "sweep"},
               {"options",
                {{"space", "sweep.yaml"},
                 {"model_config", root_.str("configs/model.yaml")},
                 {"data", "shards"}}}};
  ValidatedSpec v = validate_job_spec(spec, ctx_);
  EXPECT_EQ(v.kind, JobKind::kSweep);
  Job job;
  job.id = 3;
  job.kind = v.kind;
  job.spec_json = v.to_json();
  job.output_dir = job_output_dir(v, ctx_, job.id);
  EXPECT_EQ(job.output_dir, root_.str("data/jobs/3/sweep"));
  const auto args = build_job_stages(job, ctx_, "/db/jobs.db")[0].args;
  std::vector<std::string> want = {"sweep",
                                   "--space",
                                   root_.str("data/sweep.yaml"),
                                   "--model-config",
                                   root_.str("configs/model.yaml"),
                                   "--data",
                                   root_.str("data/shards"),
                                   "--output-dir",
                                   root_.str("data/jobs/3/sweep"),
                                   "--job-db",
                                   "/db/jobs.db",
                                   "--job-id",
                                   "3"};
  EXPECT_EQ(args, want);
  // A bad space names options.space; overrides are not sweep options.
  std::ofstream(root_.path() / "data" / "bad.yaml") << "params:\n  learning_rat: [1]\n";
  spec["options"]["space"] = "bad.yaml";
  EXPECT_NE(error_of(spec).find("options.space"), std::string::npos) << error_of(spec);
  EXPECT_NE(error_of(spec).find("learning_rat"), std::string::npos);
  spec["options"]["space"] = "sweep.yaml";
  spec["options"]["max_steps"] = 10;
  EXPECT_NE(error_of(spec).find("options.max_steps"), std::string::npos) << error_of(spec);
}

}  // namespace
}  // namespace ktl::jobs

namespace ktl::jobs {
namespace {

// distill: teacher and data required, alpha/temperature/top_k checked here and passed as
// ktl distill's flags, every other key a training key; a resumed job gets --resume-from.
TEST_F(JobSpecTest, DistillSpecChecksItsOptionsAndResumes) {
  fs::create_directories(root_.path() / "data" / "teacher");
  fs::create_directories(root_.path() / "data" / "jobs" / "5" / "checkpoints" / "checkpoint-9");
  ctx_.allowed_roots = {root_.str("configs")};
  json distill = {{"kind", "distill"},
                  {"options",
                   {{"teacher", "teacher"},
                    {"data", "shards"},
                    {"model_config", root_.str("configs/model.yaml")},
                    {"config", root_.str("configs/training.yaml")},
                    {"max_minutes", 30},
                    {"alpha", 0.7},
                    {"temperature", 2},
                    {"top_k", 64}}}};
  ValidatedSpec v = validate_job_spec(distill, ctx_);
  EXPECT_EQ(v.kind, JobKind::kDistill);
  EXPECT_EQ(to_string(v.kind), "distill");
  EXPECT_EQ(parse_job_kind("distill"), JobKind::kDistill);
  Job job;
  job.id = 5;
  job.kind = v.kind;
  job.spec_json = v.to_json();
  job.output_dir = job_output_dir(v, ctx_, job.id);
  EXPECT_EQ(job.output_dir, root_.str("data/jobs/5/checkpoints"));
  job.resume_from = root_.str("data/jobs/5/checkpoints/checkpoint-9");
  auto stages = build_job_stages(job, ctx_, "/db/jobs.db");
  ASSERT_EQ(stages.size(), 1u);
  std::vector<std::string> want = {"distill",
                                   "--teacher",
                                   root_.str("data/teacher"),
                                   "--data",
                                   root_.str("data/shards"),
                                   "--model-config",
                                   root_.str("configs/model.yaml"),
                                   "--config",
                                   root_.str("configs/training.yaml"),
                                   "--output-dir",
                                   root_.str("data/jobs/5/checkpoints"),
                                   "--resume-from",
                                   job.resume_from,
                                   "--alpha=0.7",
                                   "--max-minutes=30",
                                   "--temperature=2",
                                   "--top-k=64",
                                   "--job-db",
                                   "/db/jobs.db",
                                   "--job-id",
                                   "5"};
  EXPECT_EQ(stages[0].args, want);
  auto refused = [&](const std::string& key, const json& value, const std::string& why) {
    json bad = distill;
    bad["options"][key] = value;
    const std::string e = error_of(bad);
    EXPECT_NE(e.find("options." + key), std::string::npos) << key << ": " << e;
    EXPECT_NE(e.find(why), std::string::npos) << key << ": " << e;
  };
  refused("alpha", 1.5, "in [0, 1]");
  refused("alpha", "high", "in [0, 1]");
  refused("temperature", 0, "in (0, 100]");
  refused("top_k", -1, "integer >= 0");
  refused("top_k", 2.5, "integer >= 0");
  refused("max_minutes", -1, "max_minutes");
  refused("distill_alpha", 0.5, "alpha, temperature and top_k options");
  refused("lora_rank", 8, "no LoRA");
  refused("bogus", 1, "not a training option");
  refused("teacher", "../../outside", "");
  json no_teacher = distill;
  no_teacher["options"].erase("teacher");
  EXPECT_NE(error_of(no_teacher).find("options.teacher: is required"), std::string::npos);
  json no_data = distill;
  no_data["options"].erase("data");
  EXPECT_NE(error_of(no_data).find("options.data: is required"), std::string::npos);
  // The other kinds do not take a teacher: distillation is this kind's.
  json train = train_spec();
  ctx_.allowed_roots = {root_.str("configs")};
  train["options"]["distill_teacher"] = "teacher";
  EXPECT_NE(error_of(train).find("options.distill_teacher"), std::string::npos) << error_of(train);
}

}  // namespace
}  // namespace ktl::jobs
