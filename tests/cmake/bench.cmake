# Benchmark smoke: every bench/ scenario (burst, slow conversations, steady
# rate, start-up) at small N, for routerd and the minimal client. Checks
# correctness only (answered once, per-chat order); no timing assertions.
if(EXISTS ${CMAKE_SOURCE_DIR}/bench/CMakeLists.txt AND TARGET transport_telegram
   AND TARGET backend_a2a)
  add_test(NAME test_bench_smoke COMMAND bench_e2e smoke)
  set_tests_properties(test_bench_smoke PROPERTIES LABELS "integration;bench" TIMEOUT 300)
endif()
