ktl_add_test(ktl_safetensors_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/safetensors_test.cpp
  LIBS ktl_safetensors)
