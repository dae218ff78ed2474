# LibTorch inference engine: paged attention, incremental decoding, continuous batching,
# prefix cache, preemption, cancellation, int8 (tiny random-init model, well under a minute).
ktl_add_test(ktl_engine_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/engine_test.cpp
  LIBS ktl_engine)
