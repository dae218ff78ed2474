# ktl_gguf: GGUF format, writer, reader and the llama.cpp-style vocabulary (pure C++).
add_library(ktl_gguf STATIC
  ${CMAKE_CURRENT_LIST_DIR}/gguf_format.cpp
  ${CMAKE_CURRENT_LIST_DIR}/gguf_writer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/gguf_reader.cpp
  ${CMAKE_CURRENT_LIST_DIR}/gguf_vocab.cpp)
target_link_libraries(ktl_gguf PUBLIC ktl_safetensors)

# ktl_export: checkpoint directory -> GGUF for llama.cpp. No LibTorch.
add_library(ktl_export STATIC ${CMAKE_CURRENT_LIST_DIR}/gguf_export.cpp)
target_link_libraries(ktl_export PUBLIC ktl_gguf ktl_safetensors ktl_tokenizer ktl_config
  nlohmann_json::nlohmann_json)
