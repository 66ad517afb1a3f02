# The plugin test kit: librouterd-plugintest.a (header routerd/plugintest.h),
# the fake host of tests/support/fake_host.c on the core's manifest, schema
# and loader code. Installed for plugin authors; the project's plugin tests
# link the same library.
#
# The core's functions inside are made local to one relocatable object, so
# that only rdpt_* is visible: a plugin's own xmalloc() or redact() linked
# into the same test cannot clash with the kit's.
set(ROUTERD_PLUGINTEST_CORE util.c env.c manifest.c schema.c redact.c loader.c verify.c)
list(TRANSFORM ROUTERD_PLUGINTEST_CORE PREPEND ${CMAKE_SOURCE_DIR}/core/)
add_library(routerd_plugintest_objs OBJECT ${CMAKE_SOURCE_DIR}/tests/support/fake_host.c
            ${ROUTERD_PLUGINTEST_CORE})
set_target_properties(routerd_plugintest_objs PROPERTIES POSITION_INDEPENDENT_CODE ON
                      C_VISIBILITY_PRESET hidden)
target_include_directories(routerd_plugintest_objs PRIVATE ${CMAKE_SOURCE_DIR}/include
                           ${CMAKE_SOURCE_DIR}/core)
target_link_libraries(routerd_plugintest_objs PRIVATE PkgConfig::INIH PkgConfig::CRYPTO)

set(ROUTERD_PLUGINTEST_O ${CMAKE_BINARY_DIR}/plugintest/routerd_plugintest.o)
add_custom_command(OUTPUT ${ROUTERD_PLUGINTEST_O}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/plugintest
  COMMAND ${CMAKE_LINKER} -r -o ${ROUTERD_PLUGINTEST_O} $<TARGET_OBJECTS:routerd_plugintest_objs>
  COMMAND ${CMAKE_OBJCOPY} --localize-hidden ${ROUTERD_PLUGINTEST_O}
  DEPENDS routerd_plugintest_objs $<TARGET_OBJECTS:routerd_plugintest_objs>
  COMMAND_EXPAND_LISTS VERBATIM
  COMMENT "Linking the plugin test kit into one object")
add_library(routerd_plugintest STATIC ${ROUTERD_PLUGINTEST_O})
set_target_properties(routerd_plugintest PROPERTIES LINKER_LANGUAGE C OUTPUT_NAME routerd-plugintest
                      ARCHIVE_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/plugintest)
target_include_directories(routerd_plugintest PUBLIC ${CMAKE_SOURCE_DIR}/include)
target_link_libraries(routerd_plugintest PUBLIC PkgConfig::INIH PkgConfig::CRYPTO Threads::Threads
                      ${CMAKE_DL_LIBS})
install(TARGETS routerd_plugintest ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
configure_file(${CMAKE_SOURCE_DIR}/packaging/routerd-plugintest.pc.in
               ${CMAKE_BINARY_DIR}/routerd-plugintest.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/routerd-plugintest.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# find_package(routerd CONFIG) files, relocatable like the .pc files.
include(CMakePackageConfigHelpers)
file(STRINGS ${CMAKE_SOURCE_DIR}/include/routerd/plugin.h _abi REGEX "^#define RD_ABI_M(AJ|IN)OR ")
string(REGEX REPLACE ".*RD_ABI_MAJOR ([0-9]+).*" "\\1" ROUTERD_ABI_MAJOR "${_abi}")
string(REGEX REPLACE ".*RD_ABI_MINOR ([0-9]+).*" "\\1" ROUTERD_ABI_MINOR "${_abi}")
set(ROUTERD_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/routerd)
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/routerd-config.cmake.in
  ${CMAKE_BINARY_DIR}/routerd-config.cmake INSTALL_DESTINATION ${ROUTERD_CMAKE_DIR}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR CMAKE_INSTALL_LIBDIR ROUTERD_PLUGIN_INSTALL_DIR)
# A plugin built for 0.x runs on the same 0.x routerd (the ABI major is in
# the symbol name; minors only grow).
write_basic_package_version_file(${CMAKE_BINARY_DIR}/routerd-config-version.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/routerd-config.cmake ${CMAKE_BINARY_DIR}/routerd-config-version.cmake
        DESTINATION ${ROUTERD_CMAKE_DIR})
