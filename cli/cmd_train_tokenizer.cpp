// ktl train-tokenizer: trains a SentencePiece model with the fixed special ids.
#include <iostream>

#include "cli/command.h"
#include "core/data/data_pipeline.h"
#include "core/tokenizer/tokenizer.h"

namespace {

int run(const ktl::cli::Args& a) {
  ktl::TokenizerTrainOptions o;
  o.input_files = a.get_all("input");
  o.vocab_size = static_cast<int>(a.get_int("vocab-size", 32000));
  o.model_type = a.get("model-type", "bpe");
  o.character_coverage = a.get_double("character-coverage", 0.9995);
  o.input_sentence_size = a.get_int("input-sentence-size", 2000000);
  o.num_threads = static_cast<int>(a.get_int("threads", 2));
  o.seed = static_cast<int>(a.get_int("seed", 1234));
  if (o.model_type != "bpe" && o.model_type != "unigram")
    throw ktl::cli::UsageError("--model-type must be bpe or unigram");
  const std::string out = a.get("output");
  int vocab = ktl::train_tokenizer_into(o, out);
  std::cout << "wrote " << out << "/tokenizer.model and tokenizer.vocab (" << vocab
            << " pieces; <pad>=0 <unk>=1 <s>=2 </s>=3)\n";
  return 0;
}

KTL_COMMAND(ktl::cli::Command{
    "train-tokenizer",
    "train a SentencePiece tokenizer (one sentence per line input) into DIR/tokenizer.model",
    {{"input", "UTF-8 text file, one sentence per line", "", false, true, true},
     {"output", "directory for tokenizer.model and tokenizer.vocab", "", false, true},
     {"vocab-size", "pieces, including specials and 256 byte pieces", "32000"},
     {"model-type", "bpe or unigram", "bpe"},
     {"character-coverage", "share of characters covered by pieces; rest via bytes", "0.9995"},
     {"input-sentence-size", "sample this many sentences (0 = all)", "2000000"},
     {"threads", "training threads", "2"},
     {"seed", "sampling seed", "1234"}},
    run});

}  // namespace
