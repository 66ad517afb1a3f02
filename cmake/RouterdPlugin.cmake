# routerd_plugin(<kind>_<name> SOURCES ... [LIBS ...])
# Builds an OBJECT library <target>_obj (for unit tests) and the MODULE
# <kind>_<name>.so in ${ROUTERD_PLUGIN_OUTPUT_DIR}. Plugins see only the
# public header and must not reference core symbols (--no-undefined).
function(routerd_plugin target)
  cmake_parse_arguments(P "" "" "SOURCES;LIBS" ${ARGN})
  add_library(${target}_obj OBJECT ${P_SOURCES})
  set_target_properties(${target}_obj PROPERTIES POSITION_INDEPENDENT_CODE ON C_VISIBILITY_PRESET hidden)
  target_include_directories(${target}_obj PUBLIC ${CMAKE_SOURCE_DIR}/include ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${target}_obj PUBLIC ${P_LIBS} Threads::Threads)
  add_library(${target} MODULE $<TARGET_OBJECTS:${target}_obj>)
  target_link_libraries(${target} PRIVATE ${P_LIBS} Threads::Threads)
  set_target_properties(${target} PROPERTIES PREFIX "" OUTPUT_NAME ${target}
                        LIBRARY_OUTPUT_DIRECTORY ${ROUTERD_PLUGIN_OUTPUT_DIR}
                        C_VISIBILITY_PRESET hidden)
  if(NOT ROUTERD_INSTRUMENTED)
    target_link_options(${target} PRIVATE -Wl,--no-undefined)
  endif()
  add_dependencies(routerd ${target})
  install(TARGETS ${target} LIBRARY DESTINATION ${ROUTERD_PLUGIN_INSTALL_DIR})
endfunction()
