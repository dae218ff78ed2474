# ktl_data: the Korean data pipeline (read, clean, dedup, split, shard). No LibTorch.
add_library(ktl_data STATIC
  ${CMAKE_CURRENT_LIST_DIR}/utf8_util.cpp
  ${CMAKE_CURRENT_LIST_DIR}/html_text.cpp
  ${CMAKE_CURRENT_LIST_DIR}/text_cleaner.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sentence_splitter.cpp
  ${CMAKE_CURRENT_LIST_DIR}/dedup.cpp
  ${CMAKE_CURRENT_LIST_DIR}/input_stream.cpp
  ${CMAKE_CURRENT_LIST_DIR}/wiki_markup.cpp
  ${CMAKE_CURRENT_LIST_DIR}/corpus_reader.cpp
  ${CMAKE_CURRENT_LIST_DIR}/dataset_split.cpp
  ${CMAKE_CURRENT_LIST_DIR}/token_shard.cpp
  ${CMAKE_CURRENT_LIST_DIR}/default_corpus.cpp
  ${CMAKE_CURRENT_LIST_DIR}/data_pipeline.cpp)
target_link_libraries(ktl_data PUBLIC ktl_base ktl_tokenizer
  PRIVATE PkgConfig::UTF8PROC ZLIB::ZLIB BZip2::BZip2 nlohmann_json::nlohmann_json)
