# ktl_train_config: training.yaml loading/validation, usable without LibTorch (jobs daemon).
add_library(ktl_train_config STATIC
  ${CMAKE_CURRENT_LIST_DIR}/training_config.cpp
  ${CMAKE_CURRENT_LIST_DIR}/lr_schedule.cpp
  ${CMAKE_CURRENT_LIST_DIR}/console_metrics_sink.cpp)
target_link_libraries(ktl_train_config PUBLIC ktl_config)

# ktl_train: the LibTorch trainer (data loader, AdamW, mixed precision, checkpointing, eval).
add_library(ktl_train STATIC
  ${CMAKE_CURRENT_LIST_DIR}/data_loader.cpp
  ${CMAKE_CURRENT_LIST_DIR}/token_shard_source.cpp
  ${CMAKE_CURRENT_LIST_DIR}/adamw.cpp
  ${CMAKE_CURRENT_LIST_DIR}/mixed_precision.cpp
  ${CMAKE_CURRENT_LIST_DIR}/checkpointed_forward.cpp
  ${CMAKE_CURRENT_LIST_DIR}/evaluation.cpp
  ${CMAKE_CURRENT_LIST_DIR}/trainer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/trainer_checkpoints.cpp)
target_link_libraries(ktl_train PUBLIC ktl_train_config ktl_model ktl_safetensors
  PRIVATE nlohmann_json::nlohmann_json)
if(TARGET ktl_data)
  target_link_libraries(ktl_train PUBLIC ktl_data)
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/token_shard_source.cpp
    PROPERTIES COMPILE_DEFINITIONS KTL_HAVE_TOKEN_SHARD=1)
endif()
# Same flags as ktl_model: share its precompiled torch header (saves ~30 s per build).
target_precompile_headers(ktl_train REUSE_FROM ktl_model)
