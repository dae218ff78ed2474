ktl_add_test(ktl_train_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/training_config_test.cpp ${CMAKE_CURRENT_LIST_DIR}/trainer_test.cpp
  LIBS ktl_train ktl_model ktl_tokenizer)
target_precompile_headers(ktl_train_tests REUSE_FROM ktl_model_tests)

# Drives build/ktl (train, resume, eval, SIGTERM); no LibTorch in the test itself.
ktl_add_test(ktl_train_cli_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/train_cli_test.cpp
  LIBS ktl_data ktl_tokenizer)
add_dependencies(ktl_train_cli_tests ktl)
