// Instruction tuning: SFT rows (labels only on assistant tokens), packing that never lets
// attention cross a conversation, vocabulary growth that keeps old logits (DPO: dpo_test.cpp).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/adapters/lora_adapter.h"
#include "core/base/file_util.h"
#include "core/data/chat_data.h"
#include "core/model/checkpoint.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/spm_model_proto.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/chat_evaluation.h"
#include "core/train/console_metrics_sink.h"
#include "core/train/sft_batches.h"
#include "core/train/trainer.h"
#include "tests/support/tiny_checkpoint.h"

namespace {

using ktl::testing::TempDir;

struct Fixture {
  TempDir dir{"ktl-sft"};
  std::shared_ptr<ktl::Tokenizer> tok;
  std::shared_ptr<ktl::ChatTemplate> tmpl;
  Fixture() {
    tok = ktl::Tokenizer::load(ktl::testing::make_tiny_tokenizer(dir / "tok", 600));
    tmpl = std::make_shared<ktl::ChatTemplate>(ktl::ChatTemplate::require(tok));
  }
};

Fixture& fx() {
  static Fixture f;
  return f;
}

std::vector<ktl::ChatConversation> conversations() {
  return {
      {{{"user", "안녕하세요"}, {"assistant", "반가워요"}}, 1},
      {{{"system", "짧게"},
        {"user", "오늘 날씨는"},
        {"assistant", "맑아요"},
        {"user", "내일은"},
        {"assistant", "비가 와요"}},
       2},
      {{{"user", "이름이 뭐예요"}, {"assistant", "저는 작은 모델이에요"}}, 3},
  };
}

// One packed row holds the three conversations above (ChatML spells the role names out letter by
// letter in this 600-piece vocabulary: 184 positions).
constexpr int64_t kRow = 256;

ktl::Transformer tiny_model(int vocab, uint64_t seed, bool tied = true) {
  auto c = ktl::testing::tiny_model_config(vocab);
  c.max_seq_length = kRow;
  c.tie_word_embeddings = tied;
  ktl::Transformer m(c);
  m->init_weights(seed);
  m->eval();
  return m;
}

TEST(SftBatches, LabelsCoverExactlyTheAssistantTokens) {
  auto& f = fx();
  const auto convs = conversations();
  const auto chats = ktl::tokenize_conversations(*f.tmpl, convs, 1000);
  int64_t positions = 0;
  for (const auto& c : chats) positions += int64_t(c.ids.size()) - 1;
  ASSERT_LE(positions, kRow);  // all three fit in one packed row
  for (bool pack : {true, false}) {
    ktl::SftBatches b(chats, kRow, pack);
    const auto all = b.range(0, b.num_rows());
    // Targets, in order, are exactly the masked (assistant) tokens of each conversation.
    std::vector<int64_t> want, got;
    for (const auto& c : chats)
      for (size_t t = 1; t < c.ids.size(); ++t)
        if (c.mask[t]) want.push_back(c.ids[t]);
    auto tg = all.targets.reshape({-1});
    for (int64_t i = 0; i < tg.numel(); ++i)
      if (tg[i].item<int64_t>() != ktl::kIgnoreIndex) got.push_back(tg[i].item<int64_t>());
    EXPECT_EQ(got, want);
    EXPECT_EQ(b.num_target_tokens(), int64_t(want.size()));
    EXPECT_EQ(b.num_rows(), pack ? 1 : 3);
    // Unpacked batches are cut to their longest conversation; packed rows keep full length.
    int64_t longest = 0;
    for (const auto& c : chats) longest = std::max<int64_t>(longest, int64_t(c.ids.size()) - 1);
    EXPECT_EQ(all.inputs.size(1), pack ? kRow : longest);
  }
  // <|im_start|> (and the role after it) is prompt, never a target; every <|im_end|> of a
  // reply is.
  const int64_t end_id = f.tmpl->end_of_turn_id();
  const int64_t start_id = f.tok->piece_to_id("<|im_start|>");
  ktl::SftBatches b(chats, kRow, true);
  auto tg = b.range(0, 1).targets;
  EXPECT_EQ((tg == start_id).sum().item<int64_t>(), 0);
  EXPECT_EQ((tg == end_id).sum().item<int64_t>(), 4);  // four assistant turns
}

TEST(SftBatches, PackedLogitsEqualPerConversationLogits) {
  auto& f = fx();
  auto model = tiny_model(f.tok->vocab_size(), 3);
  torch::NoGradGuard no_grad;
  const auto chats = ktl::tokenize_conversations(*f.tmpl, conversations(), 1000);
  ktl::SftBatches packed(chats, kRow, true);
  ASSERT_EQ(packed.num_rows(), 1);
  const auto row = packed.range(0, 1);
  auto logits = model->forward_packed(row.inputs, row.segments);  // [1, T, V]
  int64_t offset = 0;
  for (const auto& c : chats) {
    const int64_t n = int64_t(c.ids.size()) - 1;
    auto alone = model->forward(
        torch::tensor(std::vector<int64_t>(c.ids.begin(), c.ids.end() - 1)).unsqueeze(0));
    auto part = logits.narrow(1, offset, n);
    EXPECT_TRUE(torch::allclose(part, alone, 1e-4, 1e-5))
        << "max diff " << (part - alone).abs().max().item<double>();
    offset += n;
  }
  // Plain causal attention over the same packed row would differ (the check has teeth).
  auto leaky = model->forward(row.inputs);
  const int64_t first = int64_t(chats[0].ids.size()) - 1;
  EXPECT_FALSE(torch::allclose(leaky.narrow(1, first, 4), logits.narrow(1, first, 4), 1e-4, 1e-5));
}

// SFT rows honour gradient_checkpointing, packed or not: the same gradients, each block
// recomputed. With a LoRA adapter whose dropout is on, the recompute draws the forward's masks
// (the random state is restored), so the adapter's gradients match too.
TEST(SftBatches, CheckpointingGivesTheSameGradientsPackedOrNotWithLoraDropout) {
  auto& f = fx();
  const auto chats = ktl::tokenize_conversations(*f.tmpl, conversations(), 1000);
  for (bool pack : {false, true}) {
    for (bool lora : {false, true}) {
      ktl::SftBatches rows(chats, pack ? 128 : 64, pack);
      const auto b = rows.range(0, rows.num_rows());
      std::vector<std::vector<torch::Tensor>> grads;
      for (bool ckpt : {false, true}) {
        auto model = tiny_model(f.tok->vocab_size(), 5);
        if (lora) {
          ktl::LoraConfig lc;
          lc.rank = 4;
          lc.dropout = 0.3;
          ktl::attach_lora(*model, lc, 11);
          torch::NoGradGuard no_grad;
          torch::manual_seed(5);
          for (auto& [name, p] : ktl::lora_named_parameters(*model))
            if (name.find("lora_B") != std::string::npos) p.normal_(0, 0.05);  // B A != 0
        }
        model->train();
        torch::manual_seed(21);
        ktl::sft_loss_sum(*model, b, pack, nullptr, torch::kCPU, ckpt).backward();
        grads.emplace_back();
        for (auto& p : model->parameters())
          if (p.requires_grad()) grads.back().push_back(p.grad().clone());
      }
      ASSERT_EQ(grads[0].size(), grads[1].size());
      for (size_t i = 0; i < grads[0].size(); ++i)
        EXPECT_TRUE(torch::allclose(grads[0][i], grads[1][i], 1e-5, 1e-6))
            << "pack " << pack << " lora " << lora << " param " << i;
    }
  }
}

// A conversation longer than the row loses its oldest exchanges, not its end; the system
// message stays. One exchange that alone is too long is still cut at its end.
TEST(SftBatches, LongConversationsDropTheirOldestExchanges) {
  auto& f = fx();
  ktl::ChatConversation c{{{"system", "짧게"},
                           {"user", "첫 질문 하나 둘 셋 넷 다섯"},
                           {"assistant", "첫 답 하나 둘 셋 넷 다섯"},
                           {"user", "두 번째 질문"},
                           {"assistant", "두 번째 답"},
                           {"user", "마지막 질문"},
                           {"assistant", "마지막 답"}},
                          1};
  ktl::ChatConversation tail{{c.messages[0], c.messages[5], c.messages[6]}, 1};
  const auto last = f.tmpl->render(tail.messages, false);
  int64_t cut = 0;
  const auto t = ktl::tokenize_conversations(*f.tmpl, {c}, int64_t(last.ids.size()), &cut);
  EXPECT_EQ(cut, 1);
  EXPECT_EQ(t[0].ids, std::vector<int64_t>(last.ids.begin(), last.ids.end()));
  EXPECT_EQ(t[0].mask, last.assistant_mask);
  // Room for everything: nothing dropped.
  const auto whole = ktl::tokenize_conversations(*f.tmpl, {c}, 10000, &cut);
  EXPECT_EQ(cut, 0);
  EXPECT_EQ(whole[0].ids.size(), f.tmpl->render(c.messages, false).ids.size());
  // Not even the last exchange fits: its end is cut.
  const auto small = ktl::tokenize_conversations(*f.tmpl, {c}, 6, &cut);
  EXPECT_EQ(cut, 1);
  ASSERT_EQ(small[0].ids.size(), 6u);
  EXPECT_EQ(small[0].ids[1], f.tok->piece_to_id("<|im_start|>"));  // the system turn opens
}

TEST(VocabGrowth, OldTokensKeepTheirLogitsAndTheHeadStaysTied) {
  for (bool tied : {true, false}) {
    auto model = tiny_model(300, 5, tied);
    torch::NoGradGuard no_grad;
    auto tokens = torch::randint(0, 300, {2, 20}, torch::kLong);
    auto before = model->forward(tokens);  // [2, 20, 300]
    model->grow_vocab(304);
    EXPECT_EQ(model->config().vocab_size, 304);
    auto after = model->forward(tokens);  // [2, 20, 304]
    ASSERT_EQ(after.size(2), 304);
    // Same values up to the rounding of a differently shaped GEMM (BLAS blocks by N).
    EXPECT_TRUE(torch::allclose(after.narrow(2, 0, 300), before, 1e-5, 1e-6))
        << (after.narrow(2, 0, 300) - before).abs().max().item<double>();
    EXPECT_EQ(after.narrow(2, 0, 300).argmax(-1).equal(before.argmax(-1)), true);
    // New rows are the mean of the old rows.
    auto w = model->embed_tokens->weight;
    EXPECT_TRUE(torch::allclose(w[303], w.narrow(0, 0, 300).mean(0)));
    if (tied) {
      EXPECT_EQ(model->output_weight().data_ptr(), model->embed_tokens->weight.data_ptr());
      EXPECT_EQ(model->named_parameters().size(),
                tiny_model(300, 5, true)->named_parameters().size());
    } else {
      EXPECT_EQ(model->lm_head->weight.size(0), 304);
    }
  }
}

TEST(VocabGrowth, OlderCheckpointGetsTheMarkersAndSavesAndLoads) {
  TempDir dir("ktl-grow");
  ktl::TokenizerTrainOptions o;
  ktl::testing::write_lines(dir / "c.txt", ktl::testing::korean_sentences(1500));
  o.input_files = {dir / "c.txt"};
  o.model_prefix = dir / "old";
  o.vocab_size = 600;
  o.input_sentence_size = 0;
  o.character_coverage = 0.99;
  o.user_defined_symbols.clear();  // an older tokenizer
  ktl::train_tokenizer(o);
  ktl::testing::make_tiny_checkpoint(dir / "ck", dir / "old.model");
  auto ck = ktl::load_checkpoint(dir / "ck");
  EXPECT_FALSE(ktl::has_chat_markers(ck.tokenizer->model_bytes()));
  EXPECT_FALSE(std::filesystem::exists(dir / "ck/tokenizer_config.json"));
  torch::NoGradGuard no_grad;
  auto tokens = torch::tensor(std::vector<int64_t>{2, 10, 20, 30, 40}).unsqueeze(0);
  auto before = ck.model->forward(tokens);
  ASSERT_TRUE(ktl::add_chat_markers(ck));  // the ChatML pair: <|im_start|> 600, <|im_end|> 601
  EXPECT_FALSE(ktl::add_chat_markers(ck));
  EXPECT_EQ(ck.config.vocab_size, 602);
  EXPECT_TRUE(torch::allclose(ck.model->forward(tokens).narrow(2, 0, 600), before, 1e-5, 1e-6));
  ktl::save_checkpoint(dir / "grown", *ck.model, ck.tokenizer->model_bytes(), ck.meta);
  // tokenizer_config.json: the ChatML template and the special pieces' ids.
  const auto cfg = nlohmann::json::parse(ktl::read_file(dir / "grown/tokenizer_config.json"));
  EXPECT_EQ(cfg["chat_template"], ktl::ChatTemplate::jinja(ktl::ChatFormat::kChatML));
  EXPECT_EQ(cfg["added_tokens_decoder"]["601"]["content"], "<|im_end|>");
  // Hugging Face's generate() stops at </s> and at the grown vocabulary's <|im_end|> (id 601).
  std::ifstream gen(dir / "grown/generation_config.json");
  const std::string gen_text((std::istreambuf_iterator<char>(gen)), {});
  EXPECT_NE(gen_text.find("\"eos_token_id\": [3, 601]"), std::string::npos) << gen_text;
  EXPECT_NE(
      ktl::generation_config_json(ktl::read_file(dir / "old.model")).find("\"eos_token_id\": 3,"),
      std::string::npos);
  auto back = ktl::load_checkpoint(dir / "grown");
  EXPECT_EQ(back.config.vocab_size, 602);
  const auto tmpl = ktl::ChatTemplate::for_tokenizer(back.tokenizer);
  ASSERT_TRUE(tmpl.has_value());
  EXPECT_EQ(tmpl->format(), ktl::ChatFormat::kChatML);
  EXPECT_TRUE(torch::equal(back.model->forward(tokens), ck.model->forward(tokens)));
}

TEST(VocabGrowth, LegacyCheckpointKeepsItsFormatUnlessAskedForChatML) {
  TempDir dir("ktl-legacy");
  ktl::TokenizerTrainOptions o;
  ktl::testing::write_lines(dir / "c.txt", ktl::testing::korean_sentences(1500));
  o.input_files = {dir / "c.txt"};
  o.model_prefix = dir / "legacy";
  o.vocab_size = 600;
  o.input_sentence_size = 0;
  o.character_coverage = 0.99;
  o.user_defined_symbols = {"<|system|>", "<|user|>", "<|assistant|>", "<|end|>"};
  ktl::train_tokenizer(o);
  ktl::testing::make_tiny_checkpoint(dir / "ck", dir / "legacy.model");
  // Saved as before ChatML: the legacy template and <|end|> (id 7) as an end token.
  const auto cfg = nlohmann::json::parse(ktl::read_file(dir / "ck/tokenizer_config.json"));
  EXPECT_EQ(cfg["chat_template"], ktl::ChatTemplate::jinja(ktl::ChatFormat::kLegacy));
  EXPECT_NE(ktl::read_file(dir / "ck/generation_config.json").find("[3, 7]"), std::string::npos);
  auto ck = ktl::load_checkpoint(dir / "ck");
  EXPECT_FALSE(ktl::add_chat_markers(ck));  // fine-tuning it keeps its format
  EXPECT_EQ(ktl::ChatTemplate::require(ck.tokenizer).format(), ktl::ChatFormat::kLegacy);
  ASSERT_TRUE(ktl::add_chat_markers(ck, ktl::ChatFormat::kChatML));  // switched on request
  EXPECT_EQ(ck.config.vocab_size, 602);
  EXPECT_EQ(ktl::ChatTemplate::require(ck.tokenizer).format(), ktl::ChatFormat::kChatML);
  ktl::save_checkpoint(dir / "switched", *ck.model, ck.tokenizer->model_bytes(), ck.meta);
  auto back = ktl::load_checkpoint(dir / "switched");
  EXPECT_EQ(ktl::detect_chat_format(*back.tokenizer).format, ktl::ChatFormat::kChatML);
  EXPECT_NE(ktl::read_file(dir / "switched/generation_config.json").find("[3, 601]"),
            std::string::npos);
  // A checkpoint whose template ktl cannot render is refused, not re-templated.
  std::filesystem::create_directories(dir / "odd");
  ktl::write_file_atomic(dir / "odd/tokenizer.model", ktl::read_file(dir / "legacy.model"));
  ktl::write_file_atomic(dir / "odd/tokenizer_config.json", R"({"chat_template": "{{ x }}"})");
  ktl::LoadedCheckpoint odd;
  odd.tokenizer = ktl::Tokenizer::load(dir / "odd/tokenizer.model");
  EXPECT_THROW(ktl::add_chat_markers(odd), ktl::ChatFormatError);
}

TEST(Sft, TrainerLearnsTheRepliesOnlyAndAnswersThem) {
  auto& f = fx();
  TempDir out("ktl-sft-run");
  auto model = tiny_model(f.tok->vocab_size(), 11);
  model->train();
  const auto convs = conversations();
  ktl::TrainerData data;
  data.chat_template = f.tmpl;
  data.sft_train = std::make_shared<ktl::SftBatches>(
      ktl::tokenize_conversations(*f.tmpl, convs, 129), 128, true);
  data.sft_val = data.sft_train;
  data.sample_chats = {convs[0]};
  ktl::TrainingConfig c;
  c.batch_size = 1;
  c.max_seq_length = 128;
  c.learning_rate = 1e-2;
  c.min_learning_rate = 3e-3;
  c.warmup_steps = 5;
  c.max_steps = 100;
  c.weight_decay = 0;
  c.save_steps = 0;
  c.eval_steps = 0;
  c.sample_steps = 0;
  c.log_steps = 50;
  c.bf16 = "false";
  c.device = "cpu";
  ktl::ConsoleMetricsSink sink(stdout);
  ktl::Trainer trainer(c, model, f.tok, data, out.path(), sink, torch::kCPU);
  const double start = trainer.evaluate_now().loss;
  const auto r = trainer.run();
  ASSERT_TRUE(r.last_eval.has_value());
  EXPECT_LT(r.last_eval->loss, start * 0.1) << "from " << start;
  const std::string answer = ktl::generate_chat_reply(
      *model, *f.tmpl, *f.tok, {{"user", "안녕하세요"}}, 20, ktl::Precision::kFp32, torch::kCPU);
  EXPECT_EQ(answer, "반가워요");
  EXPECT_TRUE(std::filesystem::exists(out / "final/tokenizer_config.json"));
}

TEST(Sft, AutoPrecisionMeasuresOnSftRowsAndLeavesTheWeights) {
  // bf16 "auto" times real steps; for SFT they are SFT rows (there is no token sampler).
  auto& f = fx();
  TempDir out("ktl-sft-auto");
  auto model = tiny_model(f.tok->vocab_size(), 12);
  model->train();
  std::vector<torch::Tensor> before;
  for (const auto& p : model->parameters()) before.push_back(p.detach().clone());
  ktl::TrainerData data;
  data.chat_template = f.tmpl;
  data.sft_train = std::make_shared<ktl::SftBatches>(
      ktl::tokenize_conversations(*f.tmpl, conversations(), 129), 128, true);
  ktl::TrainingConfig c;
  c.batch_size = 1;
  c.max_seq_length = 128;
  c.max_steps = 1;
  c.save_steps = 0;
  c.eval_steps = 0;
  c.sample_steps = 0;
  c.bf16 = "auto";
  c.device = "cpu";
  ktl::ConsoleMetricsSink sink(stdout);
  ktl::Trainer trainer(c, model, f.tok, data, out.path(), sink, torch::kCPU);
  const auto params = model->parameters();
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(torch::equal(params[i], before[i])) << i;
  EXPECT_EQ(trainer.run().status, ktl::TrainStatus::kCompleted);
}

}  // namespace
