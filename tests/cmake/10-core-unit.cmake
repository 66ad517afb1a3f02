# Unit tests and fuzz targets of the core itself (manifest, env, schema,
# rate limit, queues, watermark, redaction, metrics, store, config, sink events).
foreach(t manifest env schema ratelimit queue watermark redact metrics store config host utf8 events
        router)
  routerd_unit_test(test_core_${t} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_core_${t}.c
                    LIBS routerd_core)
endforeach()
# The same store suite against a real PostgreSQL that pg.sh starts (skipped,
# exit 77, where the server binaries are absent).
add_test(NAME test_core_store_pg
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/support/pg.sh run $<TARGET_FILE:test_core_store>)
set_tests_properties(test_core_store_pg PROPERTIES LABELS "unit;postgresql" SKIP_RETURN_CODE 77
                     TIMEOUT 180)
if(TARGET store_postgresql)
  add_dependencies(test_core_store store_postgresql)
endif()
# config_build loads the console and mock plugins from build/plugins.
add_dependencies(test_core_config transport_console backend_mock)

foreach(f manifest dotenv env)
  routerd_fuzz_target(fuzz_core_${f} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_core_${f}.c
                      LIBS routerd_core)
endforeach()
