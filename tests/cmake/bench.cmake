# Benchmark smoke: every bench/ scenario (burst, slow conversations, steady
# rate, start-up) at small N, for routerd and the minimal client, and the
# slow scenario against an agent that works on tasks (polled, pushed) and
# one that streams (its partial answers shown or not). Checks correctness only (answered once, per-chat
# order); no timing assertions.
if(EXISTS ${CMAKE_SOURCE_DIR}/bench/CMakeLists.txt AND TARGET transport_telegram
   AND TARGET backend_a2a)
  add_test(NAME test_bench_smoke COMMAND bench_e2e smoke)
  set_tests_properties(test_bench_smoke PROPERTIES LABELS "integration;bench" TIMEOUT 300)
  foreach(mode task push stream progress)
    add_test(NAME test_bench_smoke_${mode} COMMAND bench_e2e --client routerd slow 20 200 3)
    if(mode STREQUAL "push")
      set(env "BENCH_AGENT_MODE=task;BENCH_PUSH=1")
    elseif(mode STREQUAL "progress")
      set(env "BENCH_AGENT_MODE=stream;BENCH_PROGRESS=1")
    else()
      set(env "BENCH_AGENT_MODE=${mode}")
    endif()
    set_tests_properties(test_bench_smoke_${mode} PROPERTIES LABELS "integration;bench"
                         TIMEOUT 120 ENVIRONMENT "${env}")
  endforeach()
endif()
