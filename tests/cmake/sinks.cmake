# Tests of the observability sinks (plugins/sink_prometheus, sink_otlp,
# sink_jsonlog).
set(SK_DIR ${CMAKE_CURRENT_SOURCE_DIR})

# Renderers and builders as pure functions, and each plugin over a fake host.
routerd_unit_test(test_sinks_prom SOURCES ${SK_DIR}/unit/test_sinks_prom.c
                  LIBS sink_prometheus_obj)
routerd_unit_test(test_sinks_jsonlog
                  SOURCES ${SK_DIR}/unit/test_sinks_jsonlog.c ${SK_DIR}/unit/test_sinks_host.c
                  LIBS sink_jsonlog_obj)
routerd_unit_test(test_sinks_otlp
                  SOURCES ${SK_DIR}/unit/test_sinks_otlp.c ${SK_DIR}/unit/test_sinks_host.c
                  LIBS sink_otlp_obj m)
