# Tests of the telegram transport (plugins/transport_telegram).
set(TG_DIR ${CMAKE_CURRENT_SOURCE_DIR})

# Pure parsers, splitter, pacing: no host, no network.
routerd_unit_test(test_telegram_parse SOURCES ${TG_DIR}/unit/test_telegram_parse.c
                  LIBS transport_telegram_obj)
routerd_unit_test(test_telegram_split SOURCES ${TG_DIR}/unit/test_telegram_split.c
                  LIBS transport_telegram_obj)
routerd_unit_test(test_telegram_throttle SOURCES ${TG_DIR}/unit/test_telegram_throttle.c
                  LIBS transport_telegram_obj)
