# Tests of the observability sinks (plugins/sink_prometheus, sink_otlp,
# sink_jsonlog).
set(SK_DIR ${CMAKE_CURRENT_SOURCE_DIR})

# Renderers and builders as pure functions, and each plugin over a fake host.
routerd_unit_test(test_sinks_prom SOURCES ${SK_DIR}/unit/test_sinks_prom.c
                  LIBS sink_prometheus_obj)
routerd_unit_test(test_sinks_jsonlog
                  SOURCES ${SK_DIR}/unit/test_sinks_jsonlog.c
                  LIBS sink_jsonlog_obj routerd_fake_host)
routerd_unit_test(test_sinks_otlp
                  SOURCES ${SK_DIR}/unit/test_sinks_otlp.c
                  LIBS sink_otlp_obj routerd_fake_host m)

# The OTLP validator's npm packages (protobufjs, opentelemetry-proto files)
# go into the build tree once; the node-based tests depend on this fixture.
set(SK_NODE_DIR ${CMAKE_BINARY_DIR}/otlp-validator)
add_test(NAME sinks_otlp_npm_ci
         COMMAND ${CMAKE_COMMAND} -DSRC=${SK_DIR}/otlp -DDST=${SK_NODE_DIR}
                 -P ${SK_DIR}/otlp/npm_ci.cmake)
set_tests_properties(sinks_otlp_npm_ci PROPERTIES FIXTURES_SETUP sinks_node TIMEOUT 300
                     LABELS integration)
add_test(NAME test_sinks_otlp_validator COMMAND node --test ${SK_DIR}/otlp/selftest.js)
set_tests_properties(test_sinks_otlp_validator PROPERTIES FIXTURES_REQUIRED sinks_node
                     ENVIRONMENT NODE_PATH=${SK_NODE_DIR}/node_modules LABELS unit TIMEOUT 60)

# The real binary with the sinks.
set(SK_UTIL ${SK_DIR}/integration/test_sinks_util.c)
routerd_integration_test(test_sinks_e2e_otlp
                         SOURCES ${SK_DIR}/integration/test_sinks_otlp.c ${SK_UTIL} LIBS m
                         TIMEOUT 180)
add_dependencies(test_sinks_e2e_otlp sink_otlp sink_jsonlog sink_prometheus backend_mock
                 transport_console)
set_tests_properties(test_sinks_e2e_otlp PROPERTIES FIXTURES_REQUIRED sinks_node
  ENVIRONMENT "NODE_PATH=${SK_NODE_DIR}/node_modules;ASAN_OPTIONS=detect_leaks=1:abort_on_error=0")

foreach(t prometheus logs)
  if(EXISTS ${SK_DIR}/integration/test_sinks_${t}.c)
    routerd_integration_test(test_sinks_e2e_${t}
                             SOURCES ${SK_DIR}/integration/test_sinks_${t}.c ${SK_UTIL} LIBS m
                             TIMEOUT 180)
    add_dependencies(test_sinks_e2e_${t} sink_otlp sink_jsonlog sink_prometheus backend_mock
                     transport_console transport_telegram backend_a2a)
  endif()
endforeach()
if(TARGET test_sinks_e2e_prometheus)
  # No prometheus binary: exit 77, reported as skipped.
  set_tests_properties(test_sinks_e2e_prometheus PROPERTIES SKIP_RETURN_CODE 77)
endif()
if(TARGET test_sinks_e2e_logs)
  target_link_libraries(test_sinks_e2e_logs PRIVATE PkgConfig::CRYPTO) # base64 in the secrets grep
  set_tests_properties(test_sinks_e2e_logs PROPERTIES FIXTURES_REQUIRED sinks_node
    ENVIRONMENT "NODE_PATH=${SK_NODE_DIR}/node_modules;ASAN_OPTIONS=detect_leaks=1:abort_on_error=0")
endif()

# packaging/prometheus: alert rules checked and unit-tested by promtool, the
# dashboard's queries parsed by promtool and its metrics documented.
set(SK_PROM ${CMAKE_SOURCE_DIR}/packaging/prometheus)
add_test(NAME test_sinks_prom_rules_check
         COMMAND sh -c "command -v promtool >/dev/null || exit 77; promtool check rules routerd-alerts.yml"
         WORKING_DIRECTORY ${SK_PROM})
add_test(NAME test_sinks_prom_rules_unit
         COMMAND sh -c "command -v promtool >/dev/null || exit 77; promtool test rules routerd-alerts.test.yml"
         WORKING_DIRECTORY ${SK_PROM})
add_test(NAME test_sinks_prom_dashboard
         COMMAND node ${SK_PROM}/check-dashboard.js ${SK_PROM}/routerd-dashboard.json
                 ${SK_PROM}/routerd-alerts.yml ${CMAKE_SOURCE_DIR}/docs/observability.md)
set_tests_properties(test_sinks_prom_rules_check test_sinks_prom_rules_unit test_sinks_prom_dashboard
                     PROPERTIES SKIP_RETURN_CODE 77 LABELS unit TIMEOUT 60)

# Fuzz targets: the pure builders compiled into each target so a libFuzzer
# build (-DROUTERD_FUZZ=ON) instruments them.
set(SK_JL ${CMAKE_SOURCE_DIR}/plugins/sink_jsonlog)
set(SK_CO ${CMAKE_SOURCE_DIR}/plugins/common)
set(SK_OT ${CMAKE_SOURCE_DIR}/plugins/sink_otlp)
set(SK_PR ${CMAKE_SOURCE_DIR}/plugins/sink_prometheus)
routerd_fuzz_target(fuzz_sinks_jsonline
                    SOURCES ${SK_DIR}/fuzz/fuzz_sinks_jsonline.c ${SK_JL}/jsonlog_line.c ${SK_CO}/sbuf.c
                    LIBS PkgConfig::CJSON)
routerd_fuzz_target(fuzz_sinks_otlp
                    SOURCES ${SK_DIR}/fuzz/fuzz_sinks_otlp.c ${SK_OT}/otlp_json.c ${SK_OT}/otlp_answer.c
                            ${SK_CO}/sbuf.c
                    LIBS PkgConfig::CJSON)
routerd_fuzz_target(fuzz_sinks_prom
                    SOURCES ${SK_DIR}/fuzz/fuzz_sinks_prom.c ${SK_PR}/prom_format.c
                            ${SK_PR}/prom_process.c ${SK_CO}/sbuf.c)
foreach(f jsonline otlp prom)
  foreach(t fuzz_sinks_${f} fuzz_sinks_${f}_fuzzer)
    if(TARGET ${t})
      target_include_directories(${t} PRIVATE ${SK_JL} ${SK_OT} ${SK_PR} ${SK_CO})
    endif()
  endforeach()
endforeach()
