# Unit tests and fuzz targets of the core itself (manifest, env, schema,
# rate limit, queues, watermark, redaction, metrics, store, config).
foreach(t manifest env schema ratelimit queue watermark redact metrics store config)
  routerd_unit_test(test_core_${t} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_core_${t}.c
                    LIBS routerd_core)
endforeach()
# config_build loads the console and mock plugins from build/plugins.
add_dependencies(test_core_config transport_console backend_mock)

foreach(f manifest dotenv env)
  routerd_fuzz_target(fuzz_core_${f} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_core_${f}.c
                      LIBS routerd_core)
endforeach()
